"""A device's Docker engine: connecting to it, what it says the device is, and its images.

Everything goes through the Engine API (docker-py): no transport of our own. A device that lacks
an image its cells need gets it from this machine's engine, streamed from `docker save` into the
device's `docker load`, so a Raspberry Pi or a Jetson needs no registry and no copy by hand;
where `invoke push` locked a digest, the device pulls that from the registry first.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from toolkit.fleet.inventory import Device
from toolkit.images import naming
from toolkit.images.engine import PING_TIMEOUT, find_image
from toolkit.images.matrix import ARCHES, Matrix

CALL_TIMEOUT = 600  # loading a large image or removing a container on a busy board takes time
LOAD_TIMEOUT = 3600  # the longest silence allowed while a device loads a transferred image
Say = Callable[[str], None]


class Unreachable(Exception):
    """The device's engine does not answer (any more): reported as unreachable."""


class DeviceFailed(Exception):
    """The device answers but cannot run the study (a missing image, a wrong platform)."""


def client_for(device: Device, timeout: int = CALL_TIMEOUT) -> Any:  # docker.DockerClient
    import docker

    options: dict[str, Any] = {"base_url": device.engine, "timeout": timeout,
                               "tls": device.tls_config() or False}
    if device.scheme == "ssh":  # the ssh binary: ~/.ssh/config, agents and jump hosts work
        options["use_ssh_client"] = True
    return docker.DockerClient(**options)


def _reason(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:160]}{'…' if len(text) > 160 else ''}"


def answers(device: Device) -> bool:
    """Whether the engine answers a ping within PING_TIMEOUT (a fresh short-timeout client, so a
    dropped network does not hang for CALL_TIMEOUT)."""
    try:
        probe = client_for(device, PING_TIMEOUT)
        try:
            return bool(probe.ping())
        finally:
            probe.close()
    except Exception:  # noqa: BLE001 - any failure to answer is the answer
        return False


def connect(device: Device) -> Any:
    """A client whose calls may take CALL_TIMEOUT, once the engine has answered quickly."""
    try:
        probe = client_for(device, PING_TIMEOUT)
        probe.ping()
        probe.close()
    except Exception as error:  # noqa: BLE001 - DockerException, requests', ssh's errors
        raise Unreachable(f"engine {device.engine} does not answer ({_reason(error)})") from None
    return client_for(device)


def identity(device: Device, client: Any, matrix: Matrix) -> dict[str, Any]:
    """Who measured: the inventory's view plus what the engine reports of its machine.

    A device whose engine reports another CPU architecture than its platform's images is a
    mistake in the inventory (or an emulator that would measure nonsense): it fails."""
    info, version = client.info(), client.version()
    arch = info.get("Architecture") or ""
    expected = ARCHES[matrix.platform(device.platform).arch]
    if arch and arch != expected:
        raise DeviceFailed(f"device {device.name} reports a {arch} machine but platform "
                           f"{device.platform} runs {expected} images: fix its platform in "
                           "the inventory")
    return {"name": device.name, "device_type": device.device_type, "platform": device.platform,
            "engine": device.engine, "shares_filesystem": device.shared,
            "hostname": info.get("Name", ""), "arch": arch,
            "os": info.get("OperatingSystem", ""), "kernel": info.get("KernelVersion", ""),
            "cpus": info.get("NCPU"), "memory_bytes": info.get("MemTotal"),
            "engine_version": version.get("Version", ""), "engine_id": info.get("ID", ""),
            "engine_root": info.get("DockerRootDir", "")}


def holds_older_device_code(image: Any) -> bool:
    """The Docker runner's rule for this machine's images, applied to a device's."""
    return naming.holds_older_device_code(image.labels or {})


def transfer_from_local(client: Any, tag: str, local: Any, say: Say) -> bool:
    """Stream the image from this machine's engine into the device's (docker save | load)."""
    image = find_image(local, tag) if local is not None else None
    if image is None or holds_older_device_code(image):
        return False
    size = (image.attrs.get("Size") or 0) / 1e6
    say(f"transferring {tag} ({size:.0f} MB) to the device through the Engine API")
    started = time.monotonic()
    # A JetPack image (~10 GB) unpacking on a board's SD card can be silent for long.
    timeout, client.api.timeout = client.api.timeout, LOAD_TIMEOUT
    try:
        client.images.load(image.save(named=tag))  # named: the archive keeps the tag
    finally:
        client.api.timeout = timeout
    loaded = find_image(client, tag)
    if loaded is None or loaded.id != image.id:
        raise DeviceFailed(f"image {tag} was sent but the device's engine holds "
                           f"{loaded.id if loaded else 'nothing'} under that tag, not {image.id}")
    say(f"{tag}: transferred in {time.monotonic() - started:.0f} s")
    return True


# Where a missing image can come from, tried in order until one returns True. Each gets the
# device's client, the tag, this machine's client (or None) and a function for progress lines.
# First the registry, by the digests `invoke push` locked (boards on a network with a registry
# pull directly), then a transfer from this machine.
def pull_from_lock(client: Any, tag: str, local: Any, say: Say) -> bool:
    from toolkit.images.share.registry import pull_locked_onto

    return pull_locked_onto(client, tag, say)


IMAGE_SOURCES: list[Callable[[Any, str, Any, Say], bool]] = [pull_from_lock,
                                                            transfer_from_local]


def ensure_images(device: Device, client: Any, local: Any, frameworks: list[str],
                  matrix: Matrix, say: Say) -> None:
    """Make the device's engine hold the image of every framework its cells need, built from
    this checkout's device code: a missing or older image is replaced from the first source
    that has a current one (the registry by the locked digest, then this machine's engine).

    Frameworks the platform does not support are skipped: their cells are recorded as not run
    with the matrix's reason.
    """
    # The device's engine may be this machine's (`local`): then the device's image and ours
    # are the same and nothing is ever sent. Engine IDs cannot tell (cloned boards and daemons
    # sharing /etc/docker/key.json report the same one), so no attempt is made to.
    for framework in frameworks:
        if not matrix.framework_supported(device.platform, framework):
            continue
        tag = matrix.tag(device.platform, framework)
        there = find_image(client, tag)
        if there is not None and not holds_older_device_code(there):
            continue
        if any(source(client, tag, local, say) and not holds_older_device_code(
                find_image(client, tag)) for source in IMAGE_SOURCES):
            continue
        if find_image(client, tag) is None:
            raise DeviceFailed(f"image {tag} missing on device {device.name}: run invoke "
                               "build/pull there")
        raise DeviceFailed(f"image {tag} on device {device.name} holds older device code than "
                           "this checkout: invoke build (then invoke push) refreshes it")
