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
