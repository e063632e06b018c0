"""The report's Environment section: the machine and software a run recorded in its manifest
(captured by toolkit/environment.py), the images that ran its cells, and the platforms of the
version matrix with whether their hardware has run them."""
from __future__ import annotations

from typing import Any

import polars as pl

from toolkit import units

IMAGE_FIELDS = ("image", "image_id", "image_digest")


def images(cells: pl.DataFrame, runner: str) -> dict[str, Any]:
    """Every image that ran cells of this run, with its id and digest (which pin exactly what
    was measured, where a tag can move), or the message that the runner used none."""
    counts: dict[tuple[str, str, str], list[str]] = {}
    for row in cells.iter_rows(named=True):
        image, image_id, digest = (str(row.get(f) or "") for f in IMAGE_FIELDS)
        identity = (image, image_id, digest)
        if identity[0]:
            counts.setdefault(identity, []).append(str(row.get("framework") or ""))
    if not counts:
        runners = sorted({str(r) for r in cells["runner"].to_list() if r}
                         if "runner" in cells.columns else []) or [runner or "host"]
        return {"rows": [], "none": f"{', '.join(runners)} runner: no images"}
    from toolkit.images import matrix as matrices

    loaded = matrices.load()  # once for every image
    rows = [[tag, image_id or units.MISSING, digest or units.MISSING, str(len(frameworks)),
             ", ".join(sorted(set(filter(None, frameworks)))) or units.MISSING,
             image_hardware(tag, loaded)]
            for (tag, image_id, digest), frameworks in sorted(counts.items())]
    return {"rows": rows, "none": ""}


def image_hardware(tag: str, loaded: Any) -> str:
    """The matrix's word on whether an image (edgerepro/<framework>:<platform>-<hash>, with or
    without a registry in front) was proven on the hardware it is for."""
    name, _, version = tag.rpartition("/")[2].partition(":")
    platform = version.rsplit("-", 1)[0]
    if platform not in loaded.platforms or name not in loaded.platforms[platform].frameworks:
        return units.MISSING
    return loaded.hardware(platform, name)


def platform_hardware() -> list[list[str]]:
    """Every platform of the matrix with what it is for and whether that hardware ran it."""
    from toolkit.images import matrix as matrices

    loaded = matrices.load()
    return [[name, platform.description, platform.hardware]
            for name, platform in loaded.platforms.items()]


def _flatten(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    """Nested values as dotted keys, so a two-column table shows every one; byte counts also
    in GiB."""
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
        return
    if isinstance(value, list | tuple):
        text = ", ".join(str(v) for v in value)
    elif value is None:
        text = units.MISSING
    elif prefix.endswith("_bytes") and isinstance(value, int | float):
        text = f"{units.fmt(units.convert(value, 'B', 'GiB'))} GiB ({value} B)"
    else:
        text = str(value)
    out.append((prefix, text))


def environment_rows(environment: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, value) rows of the recorded environment; packages get their own table."""
    rows: list[tuple[str, str]] = []
    _flatten("", {k: v for k, v in environment.items() if k != "packages"}, rows)
    return rows


def package_rows(environment: dict[str, Any]) -> list[tuple[str, str]]:
    """(package, version) rows in name order; a package recorded without a version shows as
    missing rather than "None"."""
    packages = environment.get("packages") or {}
    if not isinstance(packages, dict):
        return []
    return [(str(k), units.MISSING if v is None else str(v)) for k, v in sorted(packages.items())]
