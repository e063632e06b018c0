"""`invoke bench`: every benchmark's outcome is written, a failing one with its reason."""
import pytest

from toolkit import bench, bench_files
from toolkit.errors import UserError


def _crashes(workdir):
    raise ValueError("no architecture of the fit\nwithin 1.0 % of 50829 parameters")


def _refuses(workdir):
    raise UserError("image missing; run `invoke build`")


def _measures(workdir):
    return {"seconds": 0.5, "met": True}


def _misses(workdir):
    return {"seconds": 9.0, "met": False}


@pytest.fixture
def benches(monkeypatch):
    monkeypatch.setattr(bench.bench_files, "machine_record", lambda repo: {"cpu": "test"})
    chosen = {"crashes": bench.Benchmark(_crashes, "t crash"),
              "measures": bench.Benchmark(_measures, "t measure"),
              "refuses": bench.Benchmark(_refuses, "t refuse"),
              "misses": bench.Benchmark(_misses, "t miss")}
    monkeypatch.setattr(bench, "BENCHMARKS", chosen)
    return chosen


def test_a_failing_benchmark_is_recorded_beside_the_others_figures(benches, tmp_path, capsys):
    with pytest.raises(UserError) as raised:
        bench.run_all(None, tmp_path)
    (path,) = tmp_path.glob("*.json")
    assert str(raised.value) == (f"benchmarks failed: crashes, refuses; targets missed: misses "
                                 f"(figures and reasons in {path})")
    machine, figures = bench_files.read(path)
    assert machine == {"cpu": "test"}
    # one line: the exception's type and message, whitespace folded
    assert figures["crashes"] == {"failed": "ValueError: no architecture of the fit within 1.0 % "
                                            "of 50829 parameters",
                                  "target": "t crash", "met": False}
    assert figures["refuses"] == {"failed": "UserError: image missing; run `invoke build`",
                                  "target": "t refuse", "met": False}
    assert figures["measures"] == {"seconds": 0.5, "met": True, "target": "t measure"}
    assert figures["misses"] == {"seconds": 9.0, "met": False, "target": "t miss"}
    shown = capsys.readouterr().err
    assert "bench crashes failed: ValueError: no architecture" in shown
    assert "FAILED" in shown and "NO" in shown and "t refuse" in shown


def test_only_the_named_benchmark_runs_and_passing_ones_exit_cleanly(benches, tmp_path):
    path = bench.run_all("measures", tmp_path)
    assert bench_files.read(path)[1] == {"measures": {"seconds": 0.5, "met": True,
                                                      "target": "t measure"}}
    with pytest.raises(UserError, match=r"^benchmarks failed: crashes \(figures and reasons"):
        bench.run_all("crashes", tmp_path / "again")
    assert list((tmp_path / "again").glob("*.json"))
    with pytest.raises(UserError, match="unknown benchmark 'nope'; valid: crashes, measures"):
        bench.run_all("nope", tmp_path)


def test_every_shipped_benchmark_states_its_target():
    assert all(entry.target and callable(entry.measure) for entry in bench.BENCHMARKS.values())
