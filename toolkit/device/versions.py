"""What an image really holds: `python -m toolkit.device.versions [MODULE...]` prints JSON.

The builder compares this with the version matrix after every build (the smoke test). With
`--manifest EXPECTED.json` it prints the image's version manifest instead: the matrix's pins
(written by the host) beside what is really installed, without importing any framework.
Installed distributions are read from their *.dist-info / *.egg-info directory names, because
importlib.metadata does not exist on Python 3.6 (L4T r32.7.1).
"""
import importlib
import json
import os
import platform
import re
import sys


def _canonical(name):
    # type: (str) -> str
    return re.sub(r"[-_.]+", "-", name).lower()


def distributions():
    # type: () -> Dict[str, str]
    """Every distribution on sys.path: canonical name -> version (first one on the path wins)."""
    found = {}  # type: Dict[str, str]
    for entry in sys.path:
        if not entry or not os.path.isdir(entry):
            continue
        for item in sorted(os.listdir(entry)):
            match = re.match(r"^(.+?)-([^-]+?)\.(dist-info|egg-info)$", item)
            if match:
                found.setdefault(_canonical(match.group(1)), match.group(2))
    return found


def module_versions(modules):
    # type: (List[str]) -> Dict[str, str]
    """Import each module (that is the smoke test) and report its __version__.

    "module:function" calls a device-side loader instead, for frameworks that cells load in a
    special way (onnxruntime.training.api without torch)."""
    versions = {}
    for name in modules:
        module_name, _, function = name.partition(":")
        module = importlib.import_module(module_name)
        if function:
            getattr(module, function)()
        versions[name] = str(getattr(module, "__version__", ""))
    return versions


def report(modules):
    # type: (List[str]) -> Dict[str, Any]
    return {"python": platform.python_version(), "machine": platform.machine(),
            "modules": module_versions(modules), "distributions": distributions()}


def main(argv):
    # type: (List[str]) -> int
    if argv[:1] == ["--manifest"]:
        with open(argv[1]) as handle:
            manifest = json.load(handle)
        manifest["installed"] = report([])
        json.dump(manifest, sys.stdout, indent=1, sort_keys=True)
    else:
        json.dump(report(argv), sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
