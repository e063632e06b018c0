"""The frameworks the device side runs, one package each: `backends/<framework>/`.

A backend package holds all of its framework's device code and, in its `__init__.py`, its one
declaration: a `Backend` subclass decorated with `@register`. The declaration says

- `name`: the framework, as the spec's `framework` coordinate and the matrix name it;
- `jobs`: {job kind: "module:function"}, the jobs it runs (a module starting with "." is inside
  the package); each function takes the job dict and returns the result dict (toolkit.device.job);
- `host_packages`: the Python distributions the host runner needs for its cells;
- `reads_onnx`: whether its cells run the model's ONNX export (the host prepares the export).

Everything else reads these declarations: the host's toolkit/frameworks.py (spec values, matrix
entries, host runner check, CLI help) and toolkit/device/job.py (which function runs a job).
A job's module is imported only when the job runs, and a package's `__init__.py` must not import
its framework, so finding every backend imports no framework (docs/adding-a-framework.md).
"""
import importlib
import pkgutil

_REGISTERED = {}  # type: Dict[str, type]
_DISCOVERED = []  # type: List[bool]


class Backend(object):
    """One framework's declaration (see the module docstring)."""

    name = ""  # type: str
    jobs = {}  # type: Dict[str, str]
    host_packages = ()  # type: Tuple[str, ...]
    reads_onnx = False


def register(cls):
    # type: (type) -> type
    """Class decorator: make this framework's backend known by its name."""
    if not cls.name or not cls.jobs:
        raise ValueError("backend {} declares no name or no jobs".format(cls.__qualname__))
    known = _REGISTERED.get(cls.name)
    if known is not None and known.__qualname__ != cls.__qualname__:
        raise ValueError("framework '{}' is declared twice ({} and {})".format(
            cls.name, known.__module__, cls.__module__))
    _REGISTERED[cls.name] = cls
    return cls


def registered():
    # type: () -> Dict[str, type]
    """Every backend in this folder, by framework name, in folder order."""
    if not _DISCOVERED:
        for found in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
            if found.ispkg:
                importlib.import_module("{}.{}".format(__name__, found.name))
        _DISCOVERED.append(True)
    return dict(_REGISTERED)


def target(kind, framework):
    # type: (str, str) -> Optional[str]
    """"module:function" that runs this kind of job for this framework; None: none does."""
    backend = registered().get(framework)
    if backend is None or kind not in backend.jobs:
        return None
    module, function = backend.jobs[kind].split(":")
    if module.startswith("."):
        module = backend.__module__ + module
    return "{}:{}".format(module, function)
