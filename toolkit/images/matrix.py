"""containers/matrix.toml: the one place where image versions live, validated into typed objects.

Every problem in the file becomes one UserError line naming where it is, so a typo in a pin
stops `invoke build` before Docker is ever asked. An image's tag carries `entry_hash`, a hash of
only its own platform and framework entries: changing the pytorch pin does not retag onnxruntime.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from toolkit import frameworks
from toolkit.errors import UserError
from toolkit.experiments.spec import describe_validation_error
from toolkit.tomlfiles import read_toml

CONTAINERS = Path(__file__).resolve().parents[2] / "containers"
MATRIX = CONTAINERS / "matrix.toml"
FRAMEWORKS = frameworks.NAMES  # every one needs an image per platform (or a reason it has none)
ARCHES = {"amd64": "x86_64", "arm64": "aarch64"}  # Docker's name -> wheel tags' name

# An exact release, as pip would install it: 1.19.2, 2.13.0+cpu, 2.1.0a0+41361538.nv23.06.
_VERSION = re.compile(r"^\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\+[A-Za-z0-9.]+)?$")
Version = Annotated[str, Field(pattern=_VERSION.pattern)]
Dotted = Annotated[str, Field(pattern=r"^(none|\d+(\.\d+)*)$")]


def canonical(name: str) -> str:
    """PEP 503 name: what pip compares (typing_extensions == typing-extensions)."""
    return re.sub(r"[-_.]+", "-", name).lower()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Bootstrap(_Strict):
    """How `invoke base` makes a Debian base without a registry."""

    suite: str
    variant: Literal["minbase", "buildd", "fakechroot"] = "minbase"
    include: tuple[str, ...] = ()
    mirror: str


class Base(_Strict):
    name: str
    tag: str
    digest: Annotated[str, Field(pattern=r"^(sha256:[0-9a-f]{64})?$")] = ""
    bootstrap: Bootstrap | None = None

    @property
    def ref(self) -> str:
        """What FROM names: by digest when one is pinned, so a moved tag cannot change it."""
        return f"{self.name}@{self.digest}" if self.digest else f"{self.name}:{self.tag}"


class Wheel(_Strict):
    """A wheel that is not on PyPI: where it lives and what its bytes hash to."""

    package: str
    url: Annotated[str, Field(pattern=r"^https://\S+\.whl$")]
    sha256: Annotated[str, Field(pattern=r"^([0-9a-f]{64})?$")]
    unverified: str = ""  # why sha256 is empty; the wheel is then trusted on first download
    # The file name in the wheelhouse when the URL's disagrees with the wheel's METADATA version
    # (pip refuses such a wheel whichever version a requirement names).
    store_as: Annotated[str, Field(pattern=r"^[^/\s]+\.whl$")] | None = None

    @model_validator(mode="after")
    def _hash_or_reason(self) -> Wheel:
        if not self.sha256 and not self.unverified:
            raise ValueError(f"wheel {self.package}: give its sha256 (or `unverified` with why)")
        return self

    @property
    def filename(self) -> str:
        """Its name in the wheelhouse (what pip sees)."""
        return self.store_as or self.url_filename

    @property
    def url_filename(self) -> str:
        return self.url.rsplit("/", 1)[1]


class Sdist(_Strict):
    """A package with no wheel for the target, built in the image's build stage from its pinned
    source archive (PyPI sdist) against the image's own libraries (pycuda against CUDA)."""

    package: str
    version: Version
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]

    @property
    def filename(self) -> str:
        return f"{self.package}-{self.version}.tar.gz"


class SourceBuild(_Strict):
    """A framework built from its source in the image's build stage (ONNX Runtime Training on a
    Jetson: no aarch64 wheel exists). The source is pinned by its git commit; `fixes` are sed
    expressions applied to files of the checkout before building (upstream pins that broke);
    `build` is the argument list of the project's own build script; the wheel it produces is
    installed like any other."""

    repository: Annotated[str, Field(pattern=r"^https://\S+$")]
    tag: str
    commit: Annotated[str, Field(pattern=r"^[0-9a-f]{40}$")]
    script: str  # relative to the checkout
    build: tuple[str, ...]
    fixes: dict[str, tuple[str, ...]] = {}  # file in the checkout -> sed expressions
    wheel_dir: str  # where the script leaves the wheel, relative to the checkout
    distribution: str  # the wheel's distribution name


class Framework(_Strict):
    """One framework on one platform: what is installed and what must import."""

    unsupported: str = ""
    version: Version | None = None
    import_: str | None = Field(None, alias="import")
    also_import: tuple[str, ...] = ()
    packages: dict[str, Version] = {}
    wheels: tuple[Wheel, ...] = ()
    provided: dict[str, Version] = {}
    # Built from source in the build stage, with `build_packages` (setuptools, wheel) installed
    # for the build only: they do not reach the image.
    sdists: tuple[Sdist, ...] = ()
    build_packages: dict[str, Version] = {}
    base: Base | None = None
    hardware: Annotated[str, Field(pattern=_HARDWARE)] | None = None  # overrides the platform's
    source: SourceBuild | None = None

    @field_validator("packages", "provided", "build_packages")
    @classmethod
    def _canonical_names(cls, value: dict[str, str]) -> dict[str, str]:
        return {canonical(name): version for name, version in value.items()}

    @model_validator(mode="after")
    def _complete(self) -> Framework:
        if self.unsupported:
            if self.version or self.packages or self.wheels or self.provided:
                raise ValueError("an unsupported framework pins nothing (drop its versions)")
            return self
        if not self.version or not self.import_:
            raise ValueError("give `version` and `import` (or `unsupported` with the reason)")
        for wheel in self.wheels:
            name = canonical(wheel.package)
            if name not in self.packages:
                raise ValueError(f"wheel {wheel.package} has no pin in `packages`")
            if f"-{self.packages[name]}-" not in wheel.filename:
                raise ValueError(f"wheel {wheel.filename} is not version {self.packages[name]}")
        if (self.sdists or self.source) and not self.build_packages:
            raise ValueError("sdists and source builds need build_packages (pinned tools)")
        built = {canonical(sdist.package) for sdist in self.sdists}
        if built & (set(self.packages) | set(self.provided)):
            raise ValueError(f"{', '.join(sorted(built))}: built from an sdist and also pinned "
                             "as a wheel or provided")
        overlap = set(self.packages) & set(self.provided)
        if overlap:
            raise ValueError(f"{', '.join(sorted(overlap))}: both installed and provided by "
                             "the base")
        return self

    @property
    def supported(self) -> bool:
        return not self.unsupported


# What a platform's or framework's `hardware` says: proven on the hardware it is for, or not yet
# and why.
_HARDWARE = r"^(verified on .+|unverified on hardware: .{20,})$"


class Platform(_Strict):
    description: str
    hardware: Annotated[str, Field(pattern=_HARDWARE)]
    arch: Literal["amd64", "arm64"]
    python: Annotated[str, Field(pattern=r"^3\.\d+$")]
    glibc: Annotated[str, Field(pattern=r"^2\.\d+$")]
    pip: Version
    cuda: Dotted
    cudnn: Dotted
    tensorrt: Dotted
    nvidia_runtime: bool = False
    base: Base
    frameworks: dict[str, Framework]

    @field_validator("frameworks")
    @classmethod
    def _every_framework(cls, value: dict[str, Framework]) -> dict[str, Framework]:
        unknown = sorted(set(value) - set(FRAMEWORKS))
        if unknown:
            raise ValueError(f"unknown framework '{unknown[0]}'; valid: {', '.join(FRAMEWORKS)}")
        missing = [name for name in FRAMEWORKS if name not in value]
        if missing:
            raise ValueError(f"{', '.join(missing)}: pin it or say why it is unsupported")
        return value


class Project(_Strict):
    source: str = ""


class Matrix(_Strict):
    schema_: Literal[1] = Field(alias="schema")
    project: Project = Project()
    platforms: dict[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]*$")], Platform]

    def platform(self, name: str) -> Platform:
        if name not in self.platforms:
            raise UserError(f"unknown platform '{name}'; valid: {', '.join(self.platforms)}")
        return self.platforms[name]

    def framework(self, platform: str, name: str) -> Framework:
        if name not in FRAMEWORKS:
            raise UserError(f"unknown framework '{name}'; valid: {', '.join(FRAMEWORKS)}")
        entry = self.platform(platform).frameworks[name]
        if not entry.supported:
            raise UserError(f"{name} is not supported on {platform}: {entry.unsupported}")
        return entry

    def base_of(self, platform: str, framework: str) -> Base:
        entry = self.platform(platform).frameworks[framework]
        return entry.base or self.platforms[platform].base

    def entry_hash(self, platform: str, framework: str) -> str:
        """12 hex digits over exactly what this image is built from (its tag's suffix)."""
        chosen = self.platform(platform)
        entry = chosen.frameworks[framework].model_dump(mode="json", by_alias=True)
        for key in ("sdists", "build_packages", "hardware", "source"):  # added later
            if not entry[key]:
                del entry[key]
        entry.pop("hardware", None)  # documentation, not a build input
        payload = {"schema": self.schema_, "platform": platform, "framework": framework,
                   "settings": chosen.model_dump(mode="json", by_alias=True,
                                                 exclude={"frameworks", "hardware"}),
                   "entry": entry}
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def hardware(self, platform: str, framework: str) -> str:
        """Whether this image was proven on the hardware it is for ("verified on ..."), or
        "unverified on hardware: <why>"."""
        entry = self.platform(platform).frameworks.get(framework)
        return (entry.hardware if entry is not None and entry.hardware
                else self.platform(platform).hardware)

    def framework_supported(self, platform: str, framework: str) -> bool:
        """Whether the matrix pins this framework on this platform (no error either way)."""
        entry = self.platforms.get(platform)
        return bool(entry and framework in entry.frameworks
                    and entry.frameworks[framework].supported)

    def tag(self, platform: str, framework: str) -> str:
        return f"edgerepro/{framework}:{platform}-{self.entry_hash(platform, framework)}"

    def selection(self, platform: str = "", framework: str = "") -> list[tuple[str, str]]:
        """The supported (platform, framework) pairs the user asked for, names checked."""
        platforms = [platform] if platform else list(self.platforms)
        for name in platforms:
            self.platform(name)
        if framework and framework not in FRAMEWORKS:
            raise UserError(f"unknown framework '{framework}'; valid: {', '.join(FRAMEWORKS)}")
        if framework and platform:
            self.framework(platform, framework)  # unsupported: say why
        return [(p, f) for p in platforms for f in FRAMEWORKS
                if (not framework or f == framework) and self.platforms[p].frameworks[f].supported]


def load(path: Path = MATRIX) -> Matrix:
    """Read and validate the matrix; every problem is one UserError line."""
    data = read_toml(path, "the version matrix")
    try:
        return Matrix.model_validate(data)
    except ValidationError as error:
        raise UserError(describe_validation_error(error, path.name)) from None


def version_matches(expected: str, found: str) -> bool:
    """An exact pin must match exactly; a shorter one (8.5.2, 3.11) matches its releases."""
    if expected == found:
        return True
    return found.startswith(expected + ".") and "+" not in expected
