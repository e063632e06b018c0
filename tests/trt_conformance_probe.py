"""Drives the project's TensorRT code against the REAL TensorRT Python bindings' interface.

Run by tests/test_tensorrt_conformance.py in a subprocess where `tensorrt_bindings` (the pybind11
module of PyPI's tensorrt-bindings / tensorrt-cu12-bindings wheels) imports against stub
libnvinfer libraries: classes, enums and signatures are real, but nothing can be built or run.

Every object the code gets from TensorRT is a stand-in typed by the real class: reading or
writing an attribute the class lacks fails, a method call is bound against the signatures in
the method's docstring (pybind11 writes them on its first lines: argument count, keyword
names, and for TensorRT classes and enums the argument's type), and what it returns is a
stand-in of the declared return type. Names that the stand-in bindings have but the target
version lacks (8.6 standing in for 8.2 and 8.5) are hidden, so the code takes the path it
would take on that version.

    python tests/trt_conformance_probe.py TARGET_VERSION  ->  JSON on stdout
"""
import json
import re
import sys
import traceback

import numpy as np
import tensorrt_bindings as real

from toolkit.device.backends.tensorrt import adapter as adapters
from toolkit.device.backends.tensorrt import inference, training
from toolkit.device.training import step_graph as sg

PREFIX = "tensorrt_bindings.tensorrt."
_SIGNATURE = re.compile(r"^\s*(?:\d+\.\s+)?(\w+)\((.*)\)\s*->\s*(.+?)\s*$")

# What TensorRT 8.2.1 and 8.5.2 lack of the 8.6.1 bindings that stand in for them, from
# NVIDIA/TensorRT's Python binding sources at the tags 8.2.1 (6f38570b7406) and 8.5.2
# (ad932f72126f) (python/src/infer/pyCore.cpp, pyGraph.cpp): name -> first version that has it.
# Keyword names of the layer methods the emitter calls are the same in 8.2.1, 8.5.2 and 8.6.1.
# In 8.5.2 ResizeMode is an alias of InterpolationMode; in 8.2.1 a convolution's kernel as
# input 1 is documented for explicit quantization only (NvInfer.h), hence im2col there.
ADDED_IN = {
    "INetworkDefinition.add_cast": (8, 6, 0),
    "InterpolationMode": (8, 5, 0),
    "ICudaEngine.num_io_tensors": (8, 5, 0),
    "ICudaEngine.get_tensor_name": (8, 5, 0),
    "ICudaEngine.get_tensor_mode": (8, 5, 0),
    "ICudaEngine.get_tensor_shape": (8, 5, 0),
    "ICudaEngine.get_tensor_dtype": (8, 5, 0),
    "TensorIOMode": (8, 5, 0),
    "IExecutionContext.execute_async_v3": (8, 5, 0),
    "IExecutionContext.set_tensor_address": (8, 5, 0),
    "IExecutionContext.set_input_shape": (8, 5, 0),
    "IExecutionContext.get_tensor_shape": (8, 5, 0),
    "MemoryPoolType": (8, 4, 0),
    "IBuilderConfig.set_memory_pool_limit": (8, 4, 0),
}

VIOLATIONS = []  # type: list
CALLS = set()  # type: set


def violation(text):
    if text not in VIOLATIONS:
        VIOLATIONS.append(text)


def _split_top(text):
    """Split a parameter list at commas outside brackets (types like Tuple[int, int])."""
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch in "([<{":
            depth += 1
        elif ch in ")]>}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current)
    return [p.strip() for p in parts]


def signatures(function):
    """[(params [(name, type, has_default)], return type)] from a pybind11 docstring."""
    out = []
    for line in (getattr(function, "__doc__", None) or "").splitlines():
        match = _SIGNATURE.match(line)
        if not match or match.group(1) != getattr(function, "__name__", match.group(1)):
            continue
        params = []
        for part in _split_top(match.group(2)):
            if part.startswith("*"):
                continue
            name, _, rest = part.partition(":")
            kind, _, default = rest.partition("=")
            params.append((name.strip(), kind.strip(), bool(default.strip())))
        out.append((params, match.group(3)))
    return out


def real_type(name):
    """The real class or enum a signature names, or None for Python types."""
    if name.startswith(PREFIX):
        return getattr(real, name[len(PREFIX):].split(".")[0], None) if "." not in \
            name[len(PREFIX):] else _nested(name[len(PREFIX):])
    return None


def _nested(path):
    value = real
    for part in path.split("."):
        value = getattr(value, part, None)
        if value is None:
            return None
    return value


def is_enum(cls):
    return isinstance(cls, type) and hasattr(cls, "__members__")


class Value(object):
    """A value of no TensorRT type (an int, a shape, a bool): enough to keep the code going."""

    def __index__(self):
        return 1

    __int__ = __index__

    def __float__(self):
        return 1.0

    def __iter__(self):
        return iter((1, 3, 32, 32))

    def __bool__(self):
        return True

    def __call__(self, *args, **kwargs):
        return Value()

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return Value()

    def __lt__(self, other):
        return False

    __gt__ = __le__ = __ge__ = __lt__


def returned(kind):
    """A stand-in of a declared return type."""
    if kind == "None":
        return None
    if kind == "bool":
        return True
    if kind == "str":
        return "tensor"
    cls = real_type(kind)
    if cls is None or cls.__name__ in _IMPLICIT:
        return Value()
    if is_enum(cls):
        return list(cls.__members__.values())[0]
    return Typed(cls)


# pybind11 converts these implicitly: shapes from tuples, Weights from numpy arrays.
_IMPLICIT = {"Dims": (tuple, list), "Dims2": (tuple, list), "DimsHW": (tuple, list),
             "Dims3": (tuple, list), "Dims4": (tuple, list), "Permutation": (tuple, list),
             "Weights": (np.ndarray,)}


def accepts(kind, value):
    """Does `value` fit a parameter declared as `kind`? Only TensorRT types are checked."""
    cls = real_type(kind)
    if cls is None or value is None or isinstance(value, Value):
        return True
    if isinstance(value, _IMPLICIT.get(cls.__name__, ())):
        return all(isinstance(v, (int, np.integer)) for v in value) \
            if isinstance(value, (tuple, list)) else True
    if isinstance(value, Typed):
        return issubclass(value._cls, cls)
    return isinstance(value, cls)


def bind(owner, name, function, args, kwargs):
    """Check a call against every overload; the matching overload's return type, or None."""
    overloads = signatures(function)
    if not overloads:
        violation("{}.{}: no signature in its docstring".format(owner, name))
        return None
    problems = []
    for params, result in overloads:
        if params and params[0][0] == "self":
            params = params[1:]
        names = [p[0] for p in params]
        problem = None
        if len(args) > len(params):
            problem = "{} positional arguments, at most {}".format(len(args), len(params))
        unknown = [k for k in kwargs if k not in names]
        if unknown:
            problem = "unknown keyword {} (has {})".format(unknown, names)
        missing = [p[0] for i, p in enumerate(params)
                   if i >= len(args) and p[0] not in kwargs and not p[2]]
        if problem is None and missing:
            problem = "missing {}".format(missing)
        if problem is None:
            given = list(zip(params, args, strict=False)) + [(p, kwargs[p[0]]) for p in params
                                               if p[0] in kwargs]
            wrong = [(p[0], p[1], type(v).__name__) for p, v in given if not accepts(p[1], v)]
            if wrong:
                problem = "wrong types {}".format(wrong)
        if problem is None:
            return result
        problems.append(problem)
    violation("{}.{}({}): {}".format(owner, name, ", ".join(
        [type(a).__name__ for a in args] + ["{}=".format(k) for k in kwargs]),
        " / ".join(problems)))
    return None


class Typed(object):
    """An instance of a real TensorRT class, as far as its interface goes."""

    def __init__(self, cls):
        object.__setattr__(self, "_cls", cls)

    def _hidden(self, name):
        added = ADDED_IN.get("{}.{}".format(self._cls.__name__, name))
        return added is not None and added > TARGET

    def __getattr__(self, name):
        cls = object.__getattribute__(self, "_cls")
        if name.startswith("__") or not hasattr(cls, name) or self._hidden(name):
            raise AttributeError("'{}' has no attribute '{}' in TensorRT {}".format(
                cls.__name__, name, VERSION))
        attr = getattr(cls, name)
        if isinstance(attr, property):
            CALLS.add("{}.{}".format(cls.__name__, name))
            doc = signatures(attr.fget) if attr.fget is not None else []
            return returned(doc[0][1]) if doc else Value()

        def method(*args, **kwargs):
            CALLS.add("{}.{}".format(cls.__name__, name))
            kind = bind(cls.__name__, name, attr, args, kwargs)
            return Value() if kind is None else returned(kind)

        return method

    def __setattr__(self, name, value):
        cls = self._cls
        attr = getattr(cls, name, None)
        CALLS.add("{}.{}=".format(cls.__name__, name))
        if not isinstance(attr, property) or self._hidden(name):
            violation("{}.{} is not a property in TensorRT {}".format(cls.__name__, name,
                                                                       VERSION))
        elif attr.fset is None:
            violation("{}.{} is read-only".format(cls.__name__, name))
        else:
            kind = signatures(attr.fset)
            if kind and len(kind[0][0]) >= 2 and not accepts(kind[0][0][-1][1], value):
                violation("{}.{} = {}: expects {}".format(cls.__name__, name,
                                                         type(value).__name__, kind[0][0][-1][1]))

    def __bytes__(self):
        return b"serialized"


class Module(object):
    """The `tensorrt` module as the target version has it."""

    __version__ = ""

    def __getattr__(self, name):
        added = ADDED_IN.get(name)
        if name.startswith("__") or not hasattr(real, name) or (added and added > TARGET):
            raise AttributeError("module 'tensorrt' has no attribute '{}' in {}".format(
                name, VERSION))
        value = getattr(real, name)
        if name in ("Builder", "Runtime", "OnnxParser", "Refitter"):
            def construct(*args, **kwargs):
                CALLS.add(name)
                bind(name, "__init__", value.__init__, args, kwargs)
                return Typed(value)
            return construct
        return value


def scenarios(trt):
    """(description, callable) for everything the cells ask of TensorRT."""
    adapter = adapters.Adapter(trt)
    logger = trt.Logger(trt.Logger.WARNING)
    out = []
    widths = [4] * 13
    modes = ["im2col"] + (["kernel_tensor"] if TARGET >= (8, 5, 0) else [])
    typings = [False] + ([True] if adapter.has_strong_typing else [])
    for conv_mode in modes:
        for strongly in typings:
            for precision in ("fp32", "fp16"):
                for freeze in (0, 5):
                    cfg = sg.StepConfig("vgg16", widths, 10, 2, 32, freeze, 5e-4, 0.9)
                    params = training.init_params(cfg, 0)
                    graph = sg.build_vgg_step(cfg, {n: params[n]
                                                    for n in sg.frozen_value_names(cfg)})
                    out.append(("training step {} {} strongly={} freeze={}".format(
                        conv_mode, precision, strongly, freeze),
                        lambda g=graph, p=precision, s=strongly, c=conv_mode: training.build_plan(
                            trt, adapter, logger, g, p, 1 << 30, s, c)))
    for precision in ("fp32", "fp16"):
        out.append(("inference build " + precision, lambda p=precision: inference.build_from_onnx(
            trt, adapter, logger, b"onnx", p, 1, 1 << 30)))

    def engine_side():
        session_runtime = trt.Runtime(logger)
        engine = adapter.deserialize(session_runtime, b"plan")
        context = engine.create_execution_context()
        io = adapter.io_tensors(engine)
        assert io and all(isinstance(t["dtype"], np.dtype) for t in io), io
        adapter.set_input_shape(engine, context, io[0]["name"], (1, 3, 32, 32))
        adapter.context_io(engine, context)
        adapter.executor(engine, context)({t["name"]: 1 for t in io}, 0)
        adapter.engine_memory(engine)
        builder = trt.Builder(logger)
        builder.platform_has_fast_fp16  # noqa: B018 - the cells read it
        adapter.optimization_profile(builder, builder.create_builder_config(),
                                     adapter.create_network(builder), 2)

    out.append(("engine, context and execution", engine_side))
    out.append(("emitter casts", lambda: adapter.cast(
        Typed(real.INetworkDefinition), Typed(real.ITensor), "float16")))
    out.append(("resize mode", lambda: adapter.set_nearest(Typed(real.IResizeLayer))))
    return out


def surface():
    """The real network definition's methods (parameter names per overload) and every enum's
    members, for checking the recording stand-in (tests/fake_tensorrt.py) against them."""
    methods = {}
    for name in dir(real.INetworkDefinition):
        if name.startswith(("add_", "mark_")):
            methods[name] = [[p[0] for p in params if p[0] != "self"]
                             for params, _ in signatures(getattr(real.INetworkDefinition, name))]
    enums = {name: sorted(getattr(real, name).__members__) for name in dir(real)
             if is_enum(getattr(real, name))}
    return {"bindings": real.__version__, "network": methods, "enums": enums,
            "added_in": {k: list(v) for k, v in ADDED_IN.items()}}


def main():
    global TARGET, VERSION
    if sys.argv[1] == "--surface":
        json.dump(surface(), sys.stdout, indent=1)
        return
    VERSION = sys.argv[1]
    TARGET = adapters.parse_version(VERSION)
    trt = Module()
    Module.__version__ = VERSION
    ran = []
    for description, run in scenarios(trt):
        try:
            run()
        except Exception as error:  # noqa: BLE001 - each scenario reports what broke it
            violation("{}: {}: {} ({})".format(description, type(error).__name__, error,
                                                traceback.format_exc().splitlines()[-3].strip()))
        ran.append(description)
    json.dump({"bindings": real.__version__, "target": VERSION, "violations": VIOLATIONS,
               "calls": sorted(CALLS), "scenarios": ran}, sys.stdout, indent=1)


TARGET = (0, 0, 0)
VERSION = ""

if __name__ == "__main__":
    main()
