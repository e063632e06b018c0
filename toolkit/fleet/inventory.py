"""The fleet inventory: which devices a study can run on and how to reach their Docker engines.

One TOML file (fleet.toml at the repository root, or EDGEREPRO_FLEET, or --inventory) with a
table per device, validated strictly like the experiment specs and the version matrix, so a typo
stops the run before any engine is contacted. A device named `local` (this machine's default
engine) exists without being listed, so `--hosts local,orin` needs only the Jetson's entry.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from toolkit.errors import UserError
from toolkit.experiments.spec import describe_validation_error
from toolkit.tomlfiles import read_toml

REPO = Path(__file__).resolve().parents[2]
DEFAULT_INVENTORY = REPO / "fleet.toml"
INVENTORY_ENV = "EDGEREPRO_FLEET"
LOCAL = "local"
SCHEMES = ("ssh", "tcp", "unix")
# Engines on this machine see its filesystem, so the results directory can be bind-mounted.
LOOPBACK = ("127.0.0.1", "localhost", "::1")

# Device names become parts of run ids and directory names.
Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=40)]


class Device(BaseModel):
    """One device: where its engine answers, what it runs (a matrix platform), what it is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name = ""
    engine: str = Field(description="Docker engine URL: ssh://user@host, tcp://host:2376, "
                                    "unix:///path.sock")
    platform: str = Field(description="a platform of containers/matrix.toml")
    device_type: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    shares_filesystem: bool | None = Field(
        None, description="the engine sees this machine's results directory (default: true "
                          "for unix sockets and loopback addresses, false otherwise)")
    tls_ca_cert: str | None = None
    tls_client_cert: str | None = None
    tls_client_key: str | None = None
    tls_verify: bool = True

    @field_validator("engine")
    @classmethod
    def _engine_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in SCHEMES:
            raise ValueError(f"engine URL must start with {', '.join(s + '://' for s in SCHEMES)}")
        if parts.scheme in ("ssh", "tcp") and not parts.hostname:
            raise ValueError(f"{parts.scheme} engine URL needs a host")
        if parts.scheme == "unix" and not parts.path:
            raise ValueError("unix engine URL needs a socket path (unix:///var/run/docker.sock)")
        return value

    @field_validator("platform")
    @classmethod
    def _known_platform(cls, value: str, info: ValidationInfo) -> str:
        platforms = (info.context or {}).get("platforms")
        if platforms is not None and value not in platforms:
            raise ValueError(f"unknown platform '{value}'; valid: {', '.join(platforms)}")
        return value

    @model_validator(mode="after")
    def _tls_fits(self) -> Device:
        certs = (self.tls_ca_cert, self.tls_client_cert, self.tls_client_key)
        if any(certs) and self.scheme != "tcp":
            raise ValueError("tls_* certificates apply to tcp:// engines only")
        if bool(self.tls_client_cert) != bool(self.tls_client_key):
            raise ValueError("give tls_client_cert and tls_client_key together")
        return self

    @property
    def scheme(self) -> str:
        return urlsplit(self.engine).scheme

    @property
    def on_this_machine(self) -> bool:
        return self.scheme == "unix" or (self.scheme == "tcp"
                                         and urlsplit(self.engine).hostname in LOOPBACK)

    @property
    def shared(self) -> bool:
        """Whether bind mounts work; otherwise job and result files go through the Engine API."""
        if self.shares_filesystem is not None:
            return self.shares_filesystem
        return self.on_this_machine

    def tls_config(self) -> Any:  # docker.tls.TLSConfig | None
        """TLS for tcp:// engines that have certificates in the inventory (else plain TCP)."""
        if self.scheme != "tcp" or not (self.tls_ca_cert or self.tls_client_cert):
            return None
        from docker.tls import TLSConfig

        def path(text: str | None) -> str | None:
            if text is None:
                return None
            found = Path(text).expanduser()
            if not found.is_file():
                raise UserError(f"device {self.name}: TLS file {text} does not exist")
            return str(found)

        client = ((path(self.tls_client_cert), path(self.tls_client_key))
                  if self.tls_client_cert else None)
        ca = path(self.tls_ca_cert)
        return TLSConfig(client_cert=client, ca_cert=ca, verify=(ca or True) if self.tls_verify
                         else False)

    def public(self) -> dict[str, Any]:
        """What the run manifests record of the entry (certificate paths left out)."""
        return {"name": self.name, "engine": self.engine, "platform": self.platform,
                "device_type": self.device_type, "shares_filesystem": self.shared,
                "tls": bool(self.tls_ca_cert or self.tls_client_cert)}


class Inventory(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    devices: dict[Name, Device] = {}


def _one_line(error: ValidationError, source: str) -> str:
    """pydantic's first problem as one line; an unknown key also lists the valid ones."""
    first = error.errors()[0]
    if first["type"] == "extra_forbidden":
        where = ".".join(str(part) for part in first["loc"])
        valid = Inventory.model_fields if len(first["loc"]) == 1 else {
            name: field for name, field in Device.model_fields.items() if name != "name"}
        return f"{source}: unknown key '{where}'; valid: {', '.join(valid)}"
    return describe_validation_error(error, source)


def inventory_path(given: str | None = None) -> Path:
    """--inventory, else EDGEREPRO_FLEET, else fleet.toml at the repository root."""
    return Path(given or os.environ.get(INVENTORY_ENV) or DEFAULT_INVENTORY).expanduser()


def load(path: Path, platforms: list[str]) -> Inventory:
    """Read and validate an inventory; a missing default file is an empty inventory."""
    if not path.is_file() and path == DEFAULT_INVENTORY:
        return Inventory()
    data = read_toml(path, "the fleet inventory")
    if isinstance(data.get("devices"), dict):  # the name comes from the table key
        data["devices"] = {name: dict(entry, name=name) if isinstance(entry, dict) else entry
                           for name, entry in data["devices"].items()}
    try:
        return Inventory.model_validate(data, context={"platforms": platforms})
    except ValidationError as error:
        raise UserError(_one_line(error, path.name)) from None


def local_platform() -> str:
    """This machine's matrix platform (its L4T release on a Jetson, else its architecture)."""
    from toolkit import environment
    from toolkit.images import matrix

    return environment.local_platform(matrix.load().platforms)


def local_device() -> Device:
    """The implicit `local` device: the engine `docker` would talk to on this machine."""
    from toolkit.environment import device_type

    return Device(name=LOCAL, engine=os.environ.get("DOCKER_HOST",
                                                    "unix:///var/run/docker.sock"),
                  platform=local_platform(), device_type=device_type(), shares_filesystem=True)


def choose(inventory: Inventory, names: list[str], source: Path) -> list[Device]:
    """The devices named on the command line, in that order; an unknown name is one line."""
    known = dict(inventory.devices)
    known.setdefault(LOCAL, local_device())
    unknown = [name for name in names if name not in known]
    if unknown:
        where = source.name if source.is_file() else f"{source.name} (not found)"
        raise UserError(f"unknown device '{unknown[0]}' in {where}; valid: "
                        f"{', '.join(sorted(known))}")
    if len(set(names)) != len(names):
        raise UserError(f"--hosts names a device twice: {','.join(names)}")
    return [known[name] for name in names]
