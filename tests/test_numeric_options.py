"""Numbers on the command line and in specs: a value that is not one, or is out of range, is one
line naming the option and the value, exit 2, before anything starts; 0 is a value, not "not
given"."""
import pytest
from conftest import TINY_SPEC

from toolkit.errors import UserError
from toolkit.options import number

RUN = ["run", "--experiment", str(TINY_SPEC), "--runner", "host"]
COMPARE = ["report", "--compare", "A,B"]


@pytest.mark.parametrize("args, expected", [
    (RUN + ["--rounds", "0"], "--rounds takes a whole number from 1 to 100, got '0'"),
    (RUN + ["--rounds", "lots"], "--rounds takes a whole number from 1 to 100, got 'lots'"),
    (RUN + ["--rounds=-2"], "--rounds takes a whole number from 1 to 100, got '-2'"),
    (RUN + ["--rounds", "1.5"], "--rounds takes a whole number from 1 to 100, got '1.5'"),
    (RUN + ["--rounds", "101"], "--rounds takes a whole number from 1 to 100, got '101'"),
    (["run", "--hosts", "local", "--rounds", "0"],
     "--rounds takes a whole number from 1 to 100, got '0'"),
    (COMPARE + ["--threshold", "lots"], "--threshold takes a number >= 0, got 'lots'"),
    (COMPARE + ["--threshold=-0.1"], "--threshold takes a number >= 0, got '-0.1'"),
    (COMPARE + ["--threshold", "nan"], "--threshold takes a number >= 0, got 'nan'"),
])
def test_a_bad_number_is_one_line_and_exit_2_before_anything_starts(invoke_cmd, tmp_path, args,
                                                                    expected):
    done = invoke_cmd(*args, results=tmp_path, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stderr.strip() == f"error: {expected}", done.stderr[-3000:]
    assert list(tmp_path.iterdir()) == []  # no run was created, nothing was measured


def test_a_spec_number_that_is_not_finite_is_refused(invoke_cmd, tmp_path):
    spec = tmp_path / "spec" / "infinite.toml"
    spec.parent.mkdir()
    spec.write_text(TINY_SPEC.read_text().replace("min_seconds = 0.05", "min_seconds = inf"))
    results = tmp_path / "results"
    done = invoke_cmd("run", "--experiment", str(spec), "--runner", "host", results=results)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip() == ("error: infinite.toml: profiles.smoke.measure.min_seconds: "
                                   "Input should be a finite number (got inf)")
    assert not results.exists()


def test_numbers_given_and_not_given():
    assert number("--rounds", "", whole=True, minimum=1) is None
    assert number("--rounds", None, whole=True, minimum=1) is None
    assert number("--rounds", " 3 ", whole=True, minimum=1, maximum=100) == 3
    assert number("--threshold", "0", minimum=0) == 0.0
    assert number("--threshold", "2.5", minimum=0) == 2.5
    with pytest.raises(UserError, match=r"^--threshold takes a number >= 0, got 'inf'$"):
        number("--threshold", "inf", minimum=0)
    with pytest.raises(UserError, match=r"^--rounds takes a whole number <= 9, got '10'$"):
        number("--rounds", 10, whole=True, maximum=9)

