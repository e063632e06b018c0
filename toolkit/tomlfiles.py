"""Reading the project's TOML files (specs, the version matrix, published claims) the same way:
a malformed or unreadable file is one UserError line naming the file."""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from toolkit.errors import UserError


def read_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{path}: malformed TOML: {error}") from None
    except OSError as error:
        raise UserError(f"{path}: cannot read {what}: {error.strerror}") from None
