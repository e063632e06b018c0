"""The device side runs inside images on old stacks: Python 3.6 and no host-side libraries."""
import ast
import subprocess
import sys
from pathlib import Path

DEVICE = Path(__file__).resolve().parents[1] / "toolkit" / "device"
# Host modules the images also ship (toolkit/images/naming.py, device_files): device code may
# import them, and they obey the device side's rules.
SHARED = {"toolkit.errors": DEVICE.parent / "errors.py"}
HOST_ONLY = {"docker", "invoke", "polars", "jinja2", "pydantic", "rich", "matplotlib"}


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
            if node.module.startswith("toolkit.") and not node.module.startswith("toolkit.device"):
                roots.add(node.module)
    return roots


def test_device_side_imports_no_host_library():
    offenders = {}
    for path in [*DEVICE.rglob("*.py"), *SHARED.values()]:
        bad = {r for r in _imported_roots(path) if r in HOST_ONLY or r.startswith("toolkit.")
               and not r.startswith("toolkit.device") and r not in SHARED}
        if bad:
            offenders[str(path.relative_to(DEVICE))] = sorted(bad)
    assert offenders == {}


def test_device_side_is_python_36_compatible():
    vermin = Path(sys.executable).with_name("vermin")
    done = subprocess.run([str(vermin), "-t=3.6-", "--no-tips", "--violations",
                           "--eval-annotations", str(DEVICE), *map(str, SHARED.values())],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
