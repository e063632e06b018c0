import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
TINY_SPEC = DATA / "tiny_inference.toml"


@pytest.fixture
def invoke_cmd():
    """Run `invoke ARGS` from the repository root as a user would; returns CompletedProcess."""
    import subprocess

    def run(*args: str, results: Path | None = None, timeout: float = 600):
        import os

        env = dict(os.environ)
        if results is not None:
            env["EDGEREPRO_RESULTS"] = str(results)
            env["EDGEREPRO_REPORTS"] = str(results / "reports")
        return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=timeout)

    return run


# Screenshots and other files a person may want to look at after a test run.
ARTIFACTS = Path(os.environ.get("EDGEREPRO_TEST_ARTIFACTS", ROOT / "results" / "test-artifacts"))


@pytest.fixture(scope="session")
def client():
    """A Docker engine that answers, or the test is skipped saying how to get one."""
    from toolkit.images.engine import engine_or_none

    found = engine_or_none()
    if found is None:
        where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        pytest.skip(f"no Docker engine answers at {where} (CI starts one: .ci/setup --docker)")
    return found


@pytest.fixture(scope="session")
def built(client):
    """`invoke base` then `invoke build --platform amd64`, as a new user would run them."""
    import subprocess

    from toolkit.images import matrix

    def invoke(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, text=True,
                              capture_output=True, timeout=3600, env=dict(os.environ))

    base = invoke("base")
    assert base.returncode == 0, base.stderr[-3000:]
    done = invoke("build", "--platform", "amd64")
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = matrix.load()
    return {framework: loaded.tag("amd64", framework)
            for framework in ("pytorch", "onnxruntime", "onnxruntime-training")}


# A pushed or pulled image is known by its registry digest (repo@sha256:...), a local build by
# its content id (sha256:...); either identifies the bytes that measured a cell.
IMAGE_DIGEST = r"(\S+@)?sha256:[0-9a-f]{64}"


def synthetic_neuralscale_fit(model: str, classes: int = 10, seed: int = 0) -> dict:
    """A NeuralScale power-law fit of integer width records whose layers shrink as different
    powers of a multiplier (as pruning records do): non-uniform architectures without a search."""
    import numpy as np

    from toolkit.device import models
    from toolkit.device.scaling import neuralscale

    rng = np.random.default_rng(seed)
    full = models.full_widths(model)
    powers = rng.uniform(0.5, 1.5, len(full))
    records = [[max(1, int(w * m ** p)) for w, p in zip(full, powers, strict=True)]
               for m in np.linspace(0.05, 1.0, 25)]
    return neuralscale.fit_power_law(model, records, classes)
