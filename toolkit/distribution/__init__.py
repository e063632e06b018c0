"""Sharing built images with other labs and with devices that have no network (issue 9).

`registry`: push to and pull from a registry, the pushed digests kept in a lock file so every
later pull gets exactly those bytes. `archive`: docker-save tarballs with a sidecar manifest for
air-gapped devices. `verify`: does an image (built, pulled or loaded) hold what the matrix pins?
Host side only: these modules use the Docker SDK.
"""
from __future__ import annotations

from typing import Any

from toolkit.device.errors import UserError
from toolkit.matrix import Matrix, load


def local_image(client: Any, matrix: Matrix, platform: str, framework: str) -> Any:
    """The engine's image of a matrix entry, or a UserError saying how to get it."""
    from docker.errors import ImageNotFound

    tag = matrix.tag(platform, framework)
    try:
        return client.images.get(tag)
    except ImageNotFound:
        raise UserError(f"{tag} is not on this engine: `invoke build --platform {platform} "
                        f"--framework {framework}` or `invoke pull` it first") from None


def selected_images(platform: str, framework: str) -> tuple[Matrix, Any, list[tuple[str, str]]]:
    """(matrix, engine client, the (platform, framework) entries a share command selected;
    default: the amd64 images of every framework)."""
    from toolkit import images

    matrix = load()
    return matrix, images.connect(), matrix.selection(platform or images.default_platform(),
                                                      framework)
