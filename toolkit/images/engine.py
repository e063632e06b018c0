"""This machine's Docker engine: reaching it, its default platform, and finding an image on it.

Every host-side caller that asks an engine (this machine's or a device's) whether it holds an
image goes through `find_image`, so "missing" means one thing everywhere: the engine answered
ImageNotFound. Anything else the engine says (a broken connection, a server error) is raised.
"""
from __future__ import annotations

import os
from typing import Any

from toolkit.errors import UserError
from toolkit.images.matrix import load


def address() -> str:
    """Where this machine's Docker client looks for its engine (as docker.from_env does)."""
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


def connect(timeout: int = 10) -> Any:
    """A docker.DockerClient that answers, or a UserError saying what to do."""
    client = engine_or_none(timeout)
    if client is None:
        raise UserError(f"no Docker engine answers at {address()}: start one (apt-get install "
                        "docker.io; dockerd --bridge=none --iptables=false &), `invoke doctor` "
                        "checks the rest")
    return client


# Seconds an engine has to answer a ping before it counts as gone (a runner's engine mid-run,
# a fleet device), not a client's minutes-long call timeout.
PING_TIMEOUT = 10


def engine_or_none(timeout: int = 10) -> Any:
    """A client when an engine answers within `timeout`; its calls then wait up to 10 min
    (committing a 1 GB layer or removing a container on a busy machine takes a while)."""
    import docker
    from docker.errors import DockerException

    try:
        docker.from_env(timeout=timeout).ping()
        return docker.from_env(timeout=600)
    except DockerException:
        return None


def default_platform() -> str:
    """The platform `build` and `run` use unless told: this machine's (its L4T release on a
    Jetson, else its architecture), so a Jetson builds and runs its own images."""
    from toolkit.environment import local_platform

    return local_platform(load().platforms)


def find_image(client: Any, reference: str) -> Any | None:
    """The image a tag, an id or a repo@sha256 digest names on this engine, or None when the
    engine has no such image (callers decide whether that is an error, a skip or a fallback)."""
    from docker.errors import ImageNotFound

    try:
        return client.images.get(reference)
    except ImageNotFound:
        return None
