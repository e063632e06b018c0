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
    met = {cells[1].strip(): cells[-2].strip() for cells in (
        line.split("│") for line in shown.splitlines()) if len(cells) == 6 and cells[1].strip()}
    assert met == {"crashes": "FAILED", "measures": "yes", "refuses": "FAILED", "misses": "NO"}


def test_only_the_named_benchmark_runs_and_passing_ones_exit_cleanly(benches, tmp_path):
    with pytest.raises(UserError, match=r"^targets missed: misses \(figures and reasons in "):
        bench.run_all("misses", tmp_path / "missed")
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


def test_the_search_bench_records_each_models_outcome_and_a_failed_search(monkeypatch, tmp_path):
    """No search runs: architecture_descent gives constructed iterations, or fails for one
    model the way a tiny fit can (neuralscale.solve_widths)."""
    from toolkit.device import models
    from toolkit.device.scaling import neuralscale

    base = models.scale_widths("vgg11", 0.125)
    wider = [w + 1 for w in base]

    def descent(model, dataset, config=None, log=None):
        if model == "mobilenetv2":
            raise UserError("mobilenetv2: no architecture of the fit within 1.0% of 170464")
        its = [{"start_widths": base, "removal_steps": 4, "records": []},
               {"start_widths": wider, "removal_steps": 9, "records": [base] * 7}]
        return {"iterations": its, "final_fit": {"kind": "power_law"}}

    monkeypatch.setattr(neuralscale, "architecture_descent", descent)
    monkeypatch.setattr(bench, "_scaled_models", lambda: ["mobilenetv2", "vgg11"])
    figures = bench.neuralscale_search_cost(tmp_path)
    assert figures["mobilenetv2_failed"] == ("mobilenetv2: no architecture of the fit within "
                                             "1.0% of 170464")
    assert "mobilenetv2_minutes" not in figures and figures["met"] is False
    assert figures["vgg11_pruning_steps"] == 13 and figures["vgg11_records"] == [0, 7]
    assert figures["vgg11_fit"] == "power_law" and 0 <= figures["vgg11_minutes"] < 1
    miss = models.count_params("vgg11", wider) / models.count_params("vgg11", base) - 1
    assert figures["vgg11_start_miss_max"] == pytest.approx(miss, rel=1e-12)
    monkeypatch.setattr(bench, "_scaled_models", lambda: ["vgg11"])
    assert bench.neuralscale_search_cost(tmp_path)["met"] is True
