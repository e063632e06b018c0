"""`invoke push` / `invoke pull`: the matrix's images through a registry, pinned by digest.

A tag in a registry can be pushed over; a digest cannot. So `push` records the digest the
registry returned in a lock file (containers/images.lock.json, meant to be committed), and a
plain `pull` fetches exactly those digests, checks that they are the images the matrix entry
describes, and tags them with the local name the runners use. Remote names reuse the local tag
scheme (<registry>/<framework>:<platform>-<matrix hash>), so a registry listing says what each
image was built from. Credentials stay in the engine's login store (`docker login`): the SDK
reads it when no auth_config is passed, and nothing here reads or writes them.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from toolkit.errors import UserError
from toolkit.images.engine import connect, default_platform
from toolkit.images.matrix import CONTAINERS, Matrix, load
from toolkit.images.naming import LABEL, REPO
from toolkit.images.share import local_image, selected_images

# Overridable so tests (and a lab trying a registry out) do not rewrite the committed lock.
LOCK = Path(os.environ.get("EDGEREPRO_IMAGES_LOCK", CONTAINERS / "images.lock.json"))
LOCK_SCHEMA = 1

# Docker's reference grammar: a registry host (it must contain "." or ":" or be "localhost",
# or the engine would take it for a Docker Hub user), then lower-case path components.
_HOST = (r"(?:localhost(?::\d+)?"                          # localhost[:port]
         r"|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+(?::\d+)?"      # a.b[.c][:port], 127.0.0.1:5000
         r"|[A-Za-z0-9-]+:\d+)")                              # name:port
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REGISTRY = re.compile(rf"^{_HOST}(?:/{_COMPONENT})*$")


def parse_registry(value: str) -> str:
    """HOST[:PORT]/NAMESPACE checked, so a typo cannot send images to Docker Hub."""
    value = value.strip().rstrip("/")
    if not _REGISTRY.match(value):
        raise UserError(f"--registry '{value}' is not HOST[:PORT]/NAMESPACE (e.g. "
                        "127.0.0.1:5000/mylab or registry.example.org/mylab; the host needs a "
                        "'.' or a port, and the namespace is lower case)")
    return value


def remote_name(registry: str, local_tag: str) -> tuple[str, str]:
    """(repository, tag) in the registry for a local tag: edgerepro/F:P-H -> REGISTRY/F:P-H."""
    name, tag = local_tag.rsplit(":", 1)
    return f"{registry}/{name.split('/', 1)[1]}", tag


# -- lock file -----------------------------------------------------------------------------------

def read_lock(path: Path | None = None) -> dict[str, dict[str, dict[str, str]]]:
    """platform -> framework -> entry; an absent file is an empty lock."""
    path = path or LOCK
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: unreadable image lock ({error}); restore it from git") from None
    if not isinstance(data, dict) or data.get("schema") != LOCK_SCHEMA:
        raise UserError(f"{path}: not an image lock of schema {LOCK_SCHEMA}; restore it from git")
    return data.get("images", {})


def write_lock(locked: dict[str, dict[str, dict[str, str]]], path: Path | None = None) -> None:
    """Atomically, sorted, one key a line: the file is meant to be reviewed in diffs."""
    path = path or LOCK
    payload = {"schema": LOCK_SCHEMA,
               "about": "images by digest, written by `invoke push` and `invoke pull --registry`;"
                        " `invoke pull` fetches exactly these",
               "images": locked}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
    os.replace(partial, path)


def lock_entry(matrix: Matrix, platform: str, framework: str, registry: str, repository: str,
               tag: str, digest: str, image_id: str) -> dict[str, str]:
    return {"registry": registry, "ref": f"{repository}:{tag}", "digest": digest,
            "pinned": f"{repository}@{digest}", "image_id": image_id,
            "matrix_hash": matrix.entry_hash(platform, framework),
            "recorded": datetime.now(UTC).isoformat(timespec="seconds")}


# -- engine streams ------------------------------------------------------------------------------

def follow(stream: Iterable[dict[str, Any]], what: str, console: Console) -> dict[str, Any]:
    """Show a push/pull stream as progress; return its `aux` record; an error raises."""
    aux: dict[str, Any] = {}
    with console.status(what) as status:
        for chunk in stream:
            if "error" in chunk or "errorDetail" in chunk:
                detail = chunk.get("errorDetail") or {}
                raise _EngineError(str(detail.get("message") or chunk.get("error")))
            aux |= chunk.get("aux") or {}
            state, layer = chunk.get("status", ""), chunk.get("id", "")
            if chunk.get("progressDetail", {}).get("total"):
                status.update(f"{what}: {layer} {state} {chunk.get('progress', '')}")
            elif layer and (state in ("Pushed", "Layer already exists", "Pull complete",
                                      "Already exists") or state.startswith("Mounted from")):
                console.print(Text(f"  {layer}: {state}", style="dim"))
            elif state and not layer:
                console.print(Text(f"  {state}", style="dim"))
    return aux


class _EngineError(Exception):
    """An error the engine reported inside a push or pull stream."""


def explain(action: str, reference: str, registry: str, message: str) -> UserError:
    """One line for a failed push/pull, saying what to do."""
    message = " ".join(message.split())
    host = registry.split("/", 1)[0]
    lowered = message.lower()
    if any(sign in lowered for sign in ("connection refused", "no such host", "i/o timeout",
                                        "dial tcp", "network is unreachable",
                                        "no route to host", "server gave http response")):
        return UserError(f"registry {host} cannot be reached ({message}): check --registry and "
                         f"that the registry runs; nothing was {action}ed")
    if any(sign in lowered for sign in ("unauthorized", "authentication required", "denied")):
        return UserError(f"registry {host} refused {action} of {reference} ({message}): "
                         f"`docker login {host}` stores credentials for the engine")
    if "manifest unknown" in lowered or "not found" in lowered:
        return UserError(f"{reference} is not in registry {host} ({message}): `invoke push "
                         "--registry ...` it from a machine that built it")
    return UserError(f"{action} of {reference} failed: {message}")


# -- push ----------------------------------------------------------------------------------------

def push_image(client: Any, matrix: Matrix, platform: str, framework: str, registry: str,
               console: Console) -> dict[str, str]:
    """Push one local image; returns its lock entry (with the digest the registry computed)."""
    from docker.errors import APIError

    local = matrix.tag(platform, framework)
    image = local_image(client, matrix, platform, framework)
    repository, tag = remote_name(registry, local)
    image.tag(repository, tag=tag)
    try:
        stream = client.images.push(repository, tag=tag, stream=True, decode=True)
        aux = follow(stream, f"pushing {repository}:{tag}", console)
    except (APIError, _EngineError) as error:
        client.images.remove(f"{repository}:{tag}", noprune=True)  # nothing left half-named
        raise explain("push", f"{repository}:{tag}", registry, _message(error)) from None
    # The registry's name stays: with it the engine keeps the digest (`docker images --digests`,
    # `invoke verify -i REPO@DIGEST`); removing the tag would drop the digest too.
    digest = aux.get("Digest", "")
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise UserError(f"push of {repository}:{tag} gave no digest (engine said {aux}); "
                        "push again")
    return lock_entry(matrix, platform, framework, registry, repository, tag, digest, image.id)


def push_task(registry: str, platform: str, framework: str, console: Console) -> list[str]:
    """`invoke push`: every selected image, the lock updated after each one that succeeded."""
    registry = parse_registry(registry)
    matrix, client, selection = selected_images(platform, framework)
    lines = []
    for chosen_platform, chosen in selection:
        entry = push_image(client, matrix, chosen_platform, chosen, registry, console)
        locked = read_lock()
        locked.setdefault(chosen_platform, {})[chosen] = entry
        write_lock(locked)
        lines.append(f"pushed {entry['pinned']}")
        console.print(lines[-1])
    console.print(f"lock: {_shown(LOCK)}")
    return lines


# -- pull ----------------------------------------------------------------------------------------

def pull_reference(client: Any, reference: str, registry: str, console: Console) -> Any:
    """Pull `repo:tag` or `repo@sha256:...` with progress; the pulled image."""
    from docker.errors import APIError

    try:
        stream = client.api.pull(reference, stream=True, decode=True)
        follow(stream, f"pulling {reference}", console)
    except (APIError, _EngineError) as error:
        raise explain("pull", reference, registry, _message(error)) from None
    return client.images.get(reference)


def adopt(client: Any, image: Any, matrix: Matrix, platform: str, framework: str,
          reference: str) -> str:
    """Give a pulled image the local tag the runners look for, once it is the right entry."""
    wanted = matrix.entry_hash(platform, framework)
    found = (image.labels or {}).get(f"{LABEL}.matrix-hash", "missing")
    if found != wanted:
        raise UserError(f"{reference} was built from matrix entry {found}, but "
                        f"containers/matrix.toml gives {platform}/{framework} {wanted}: push an "
                        "image built from this matrix")
    local = matrix.tag(platform, framework)
    name, tag = local.rsplit(":", 1)
    image.tag(name, tag=tag)
    return local


def _pinned_digest(image: Any, repository: str) -> str:
    for item in image.attrs.get("RepoDigests") or []:
        name, _, digest = item.partition("@")
        if name == repository:
            return digest
    raise UserError(f"the engine recorded no digest of {repository} after the pull; pull again")


def pull_task(registry: str, platform: str, framework: str, console: Console) -> list[str]:
    """`invoke pull`: the locked digests, or with --registry the matrix tags (then locked)."""
    matrix = load()
    selection = matrix.selection(platform or default_platform(), framework)
    registry = parse_registry(registry) if registry else ""
    locked = read_lock()
    if not registry:
        _check_locked(matrix, selection, locked)
    client = connect()
    lines = []
    for chosen_platform, chosen in selection:
        if registry:
            repository, tag = remote_name(registry, matrix.tag(chosen_platform, chosen))
            image = pull_reference(client, f"{repository}:{tag}", registry, console)
            local = adopt(client, image, matrix, chosen_platform, chosen, f"{repository}:{tag}")
            entry = lock_entry(matrix, chosen_platform, chosen, registry, repository, tag,
                               _pinned_digest(image, repository), image.id)
            previous = locked.get(chosen_platform, {}).get(chosen, {})
            if previous.get("digest") not in (None, entry["digest"]):
                console.print(f"lock: {chosen_platform}/{chosen} was {previous['pinned']}, now "
                              f"{entry['pinned']} (the registry's tag moved)")
            locked.setdefault(chosen_platform, {})[chosen] = entry
            write_lock(locked)
        else:
            entry = locked[chosen_platform][chosen]
            image = pull_reference(client, entry["pinned"], entry["registry"], console)
            if image.id != entry["image_id"]:
                raise UserError(f"{entry['pinned']} has image id {image.id}, the lock says "
                                f"{entry['image_id']}: the lock file was edited by hand?")
            local = adopt(client, image, matrix, chosen_platform, chosen, entry["pinned"])
        lines.append(f"pulled {entry['pinned']} as {local}")
        console.print(lines[-1])
    return lines


def _check_locked(matrix: Matrix, selection: list[tuple[str, str]],
                  locked: dict[str, dict[str, dict[str, str]]]) -> None:
    """Before any download: every selected image is locked, for this matrix."""
    for platform, framework in selection:
        entry = locked.get(platform, {}).get(framework)
        if entry is None:
            raise UserError(f"{_shown(LOCK)} locks no image for {platform}/{framework}: "
                            "`invoke push --registry HOST[:PORT]/NAMESPACE` on the machine that "
                            "built it, or `invoke pull --registry ...`")
        wanted = matrix.entry_hash(platform, framework)
        if entry.get("matrix_hash") != wanted:
            raise UserError(f"{_shown(LOCK)} locks {platform}/{framework} built from matrix "
                            f"entry {entry.get('matrix_hash')}, but containers/matrix.toml "
                            f"now gives {wanted}: build and push it again")


def pull_locked_onto(client: Any, tag: str, say: Callable[[str], None]) -> bool:
    """Have an engine (a device's) pull the locked digest whose local tag is `tag`, then tag it.

    False when the lock names no such image or the device cannot get it from the registry:
    the caller then tries its next source (a transfer from this machine)."""
    from docker.errors import DockerException

    matrix = load()
    for platform, by_framework in read_lock().items():
        for framework, entry in by_framework.items():
            if not matrix.framework_supported(platform, framework) or \
                    matrix.tag(platform, framework) != tag:
                continue
            say(f"pulling {entry['pinned']} from the registry (images.lock.json)")
            try:
                client.api.pull(entry["pinned"])
                image = client.images.get(entry["pinned"])
            except DockerException as error:
                say(f"the registry pull failed ({_message(error)}); trying the next source")
                return False
            if image.id != entry["image_id"]:
                say(f"{entry['pinned']} is {image.id}, the lock says {entry['image_id']}")
                return False
            adopt(client, image, matrix, platform, framework, entry["pinned"])
            return True
    return False


def _shown(path: Path) -> str:
    """A path relative to the checkout when it is inside it."""
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


def _message(error: Exception) -> str:
    explanation = getattr(error, "explanation", None)
    return str(explanation or error)
