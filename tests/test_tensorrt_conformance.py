"""The project's TensorRT code against the real TensorRT Python bindings (Jetson issue): every
class, method, keyword, property and enum member it uses exists, with a matching signature, in
the version it is sent to. TensorRT 10.3 (JetPack 6) is checked against its own bindings;
8.2.1 (JetPack 4) and 8.5.2 (JetPack 5) have none on PyPI, so 8.6.1's stand in, with what
those releases lack hidden (tests/trt_conformance_probe.py: ADDED_IN, from NVIDIA's sources).
"""
import json
import os
import subprocess
import sys

import pytest
import trt_bindings

pytestmark = pytest.mark.slow
PROBE = trt_bindings.ROOT / "tests" / "trt_conformance_probe.py"
TARGETS = [("8.2.1", "8.6.1"), ("8.5.2", "8.6.1"), ("10.3.0", "10.3.0")]


def bindings_env(bindings: str) -> dict:
    """This environment plus what makes the real bindings import; skipped where they cannot be
    prepared, except on CI (it has PyPI and a compiler: the check must run there)."""
    try:
        extra = trt_bindings.prepare(bindings)
    except trt_bindings.Unavailable as missing:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"real TensorRT {bindings} bindings unavailable: {missing}")
    return dict(os.environ, **extra)


def probe(target: str, bindings: str) -> dict:
    done = subprocess.run([sys.executable, str(PROBE), target], env=bindings_env(bindings),
                          capture_output=True, text=True, cwd=trt_bindings.ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.mark.parametrize("target, bindings", TARGETS)
def test_the_cells_use_only_what_the_real_bindings_have(target, bindings):
    result = probe(target, bindings)
    assert result["bindings"].startswith(bindings)
    assert result["violations"] == [], "\n".join(result["violations"])
    calls = set(result["calls"])
    # The probe really went through the build and the execution paths of this version.
    assert {"INetworkDefinition.add_convolution_nd", "INetworkDefinition.add_matrix_multiply",
            "Builder.build_serialized_network", "Runtime.deserialize_cuda_engine",
            "OnnxParser.parse"} <= calls, sorted(calls)
    version = tuple(int(part) for part in target.split("."))
    if version >= (8, 5):  # kernel-tensor convolutions (backward data: deconvolutions)
        assert {"ICudaEngine.get_tensor_name", "IExecutionContext.execute_async_v3",
                "INetworkDefinition.add_deconvolution_nd"} <= calls
    else:
        assert {"ICudaEngine.get_binding_name", "IExecutionContext.execute_async_v2"} <= calls
    assert ("INetworkDefinition.add_cast" in calls) == (version >= (8, 6)), sorted(calls)


def test_a_wrong_call_is_caught():
    """The probe is not vacuous: a keyword the real method lacks and a string where an enum
    belongs are violations."""
    code = ("import sys; sys.argv = ['probe', '10.3.0']; import trt_conformance_probe as p; "
            "p.VERSION = '10.3.0'; p.TARGET = (10, 3, 0); "
            "net = p.Typed(p.real.INetworkDefinition); t = p.Typed(p.real.ITensor); "
            "net.add_activation(t, kind=p.real.ActivationType.RELU); "
            "net.add_activation(t, 'RELU'); "
            "print('\\n'.join(p.VIOLATIONS))")
    env = bindings_env("10.3.0")
    env["PYTHONPATH"] += os.pathsep + str(PROBE.parent)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          cwd=trt_bindings.ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2, done.stdout
    assert "unknown keyword ['kind']" in lines[0] and "wrong types" in lines[1], done.stdout


def real_surface(bindings: str) -> dict:
    done = subprocess.run([sys.executable, str(PROBE), "--surface"], env=bindings_env(bindings),
                          capture_output=True, text=True, cwd=trt_bindings.ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.mark.parametrize("target, bindings", TARGETS)
def test_the_recording_stand_in_is_no_more_permissive_than_tensorrt(target, bindings):
    """tests/fake_tensorrt.py (the emitter's CPU stand-in) offers no layer method, keyword or
    enum member the real version lacks, and its enums are typed, not strings."""
    import inspect

    import fake_tensorrt as fake

    real = real_surface(bindings)
    version = tuple(int(part) for part in target.split("."))
    hidden = {name for name, added in real["added_in"].items() if version < tuple(added)}
    trt = fake.make_trt(target)
    network = fake.make_network(trt)
    for name in dir(network):
        if not name.startswith(("add_", "mark_")):
            continue
        if not hasattr(network, name):
            continue
        assert name in real["network"] and f"INetworkDefinition.{name}" not in hidden, \
            f"{target}: the stand-in has {name}, TensorRT does not"
        params = [p for p in inspect.signature(getattr(network, name)).parameters]
        assert any(params == overload[:len(params)] for overload in real["network"][name]), \
            (name, params, real["network"][name])
    for name in dir(trt):
        value = getattr(trt, name)
        if isinstance(value, type) and name[0].isupper() and name not in ("Weights",):
            assert name in real["enums"] and name not in hidden, f"{target}: {name}"
            members = [m for m in vars(value) if not m.startswith("_")]
            assert set(members) <= set(real["enums"][name]), (name, members)
            assert all(not isinstance(getattr(value, m), str) for m in members), \
                f"{name}: members are strings, not typed enum values"
    assert hasattr(network, "add_cast") == (version >= (8, 6))
    assert hasattr(trt, "InterpolationMode") == (version >= (8, 5))
