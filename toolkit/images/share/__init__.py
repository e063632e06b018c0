"""Sharing built images with other labs and with devices that have no network (issue 9).

`registry`: push to and pull from a registry, the pushed digests kept in a lock file so every
later pull gets exactly those bytes. `archive`: docker-save tarballs with a sidecar manifest for
air-gapped devices. `verify`: does an image (built, pulled or loaded) hold what the matrix pins?
Host side only: these modules use the Docker SDK.
"""
from __future__ import annotations

from typing import Any

from toolkit.errors import UserError
from toolkit.images.engine import connect, default_platform, find_image
from toolkit.images.matrix import Matrix, load


def local_image(client: Any, matrix: Matrix, platform: str, framework: str) -> Any:
    """The engine's image of a matrix entry, or a UserError saying how to get it."""
    tag = matrix.tag(platform, framework)
    image = find_image(client, tag)
    if image is None:
        raise UserError(f"{tag} is not on this engine: `invoke build --platform {platform} "
                        f"--framework {framework}` or `invoke pull` it first")
    return image


def selected_images(platform: str, framework: str) -> tuple[Matrix, Any, list[tuple[str, str]]]:
    """(matrix, engine client, the (platform, framework) entries a share command selected;
    default: the amd64 images of every framework)."""
    matrix = load()
    return matrix, connect(), matrix.selection(platform or default_platform(), framework)
