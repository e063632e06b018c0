"""The invoke tasks as a user runs them: bad input, a full run, Ctrl-C and resume."""
import json
import os
import signal
import subprocess
import sys
import time

import polars as pl
import pytest
from conftest import DATA, ROOT, TINY_SPEC, synthetic_neuralscale_fit

from toolkit.results import record_values


@pytest.mark.parametrize("args, expected", [
    (["run", "--profile", "fast"], "unknown profile 'fast'; valid: smoke, quick, paper"),
    (["run", "--experiment", "nope"], "unknown experiment 'nope'; valid: scaling-inference"),
    (["run", "--model", "vgg12"], "unknown model 'vgg12'; valid: mobilenetv2,"),
    (["run", "--batch=-1"], "grid.batch.0: Input should be greater than or equal to 1 (got -1)"),
    (["run", "--batch", "two"], "--batch takes whole numbers separated by commas, got 'two'"),
    (["run", "--experiment", str(DATA / "malformed.toml")], "malformed.toml: malformed TOML"),
    (["run", "--runner", "ssh"], "unknown runner 'ssh'; valid: auto, host, docker"),
    (["report", "--run-id", "missing"], "no run 'missing' in"),
    (["run", "--data", "/no/such/dir"], "EDGEREPRO_DATA: no directory '/no/such/dir' (the "
                                        "folder holding cifar-10-python.tar.gz"),
    (["run", "--runner", "docker", "--memory", "lots"],
     "--memory 'lots' is not a size; write a number with b, k, m or g, e.g. 512m or 2g"),
    (["run", "--memory", "1k"], "--memory '1k' is below Docker's minimum of 6m"),
    (["run", "--runner", "host", "--memory", "2g"],
     "--memory applies to cell containers, but cells would run as host processes (--runner "
     "host); drop --memory or use --runner docker"),
    (["run", "--runner", "host", "--gpus"], "--gpus applies to cell containers"),
    (["run", "--cpuset", "0-x"], "cpuset '0-x' is malformed; write CPUs like 0-1,3"),
    (["run", "--cpuset", "0-4095"], "cpuset '0-4095' names CPUs this machine does not have"),
    (["run", "--hosts", "nosuch"], "unknown device 'nosuch' in fleet.toml (not found); valid:"),
    (["run", "--hosts", "local", "--memory", "lots"], "--memory 'lots' is not a size"),
])
def test_bad_input_gives_one_line_and_exit_2(invoke_cmd, tmp_path, args, expected):
    done = invoke_cmd(*args, results=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_a_corrupt_data_set_is_one_line_before_any_cell(invoke_cmd, tmp_path):
    """The paper profiles read CIFAR-10: a wrong archive stops the run before its first cell,
    with nothing recorded."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "cifar-10-python.tar.gz").write_bytes(b"not the CIFAR-10 archive" * 100)
    results = tmp_path / "results"
    done = invoke_cmd("run", "--profile", "paper", "--runner", "host", "--data", str(data),
                      results=results)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cifar10:" in lines[0] and "is corrupt or not the original (MD5" \
        in lines[0], done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not results.exists() or not any(results.glob("*/manifest.json"))


@pytest.mark.slow
def test_failed_cells_exit_1_and_say_their_reason_once(invoke_cmd, tmp_path):
    """A run whose cells failed exits 1 (not 2, a user error), says the shared reason once with
    the count and the cells, and names the failed cells' logs; a re-run retries them."""
    spec = tmp_path / "timeout.toml"
    spec.write_text(TINY_SPEC.read_text().replace("[settings]\n",
                                                  "[settings]\ntimeout_seconds = 0.01\n"))
    done = invoke_cmd("run", "--experiment", str(spec), "--runner", "host",
                      results=tmp_path / "results")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.count("timed out after") == 2, done.stderr  # first cell, then the group
    assert done.stderr.count("same reason as above") == 3, done.stderr
    assert "failed x4: timed out after 0 s (vgg11 uniform 0.125" in done.stderr, done.stderr
    assert "4 cell(s) failed (logs: " in done.stderr and ".log" in done.stderr, done.stderr
    again = invoke_cmd("run", "--experiment", str(spec), "--runner", "host",
                       results=tmp_path / "results")
    assert again.returncode == 1 and "resuming run" in again.stderr, again.stderr
    assert again.stderr.count("[failed]") == 4, again.stderr


def test_every_task_explains_itself(invoke_cmd):
    for name in ("build", "run", "report", "test", "bench"):
        done = invoke_cmd("--help", name)
        assert done.returncode == 0 and "Docstring:" in done.stdout, name


@pytest.mark.slow
def test_run_measures_every_cell_then_a_rerun_measures_none(invoke_cmd, tmp_path):
    first = invoke_cmd("run", "--experiment", str(TINY_SPEC), "--runner", "host",
                       results=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stderr.count("[ok]") == 4, first.stderr
    (run_dir,) = [p for p in tmp_path.iterdir() if p.name != "cache"]
    cells = [json.loads(p.read_text()) for p in (run_dir / "cells").glob("*.json")]
    assert len(cells) == 4 and all(c["status"] == "ok" for c in cells)
    for cell in cells:
        values = record_values(cell["records"])
        assert values["latency_p50"] > 0 and values["latency_n"] >= 20
        assert values["rss_peak_kernel"] >= values["rss_peak"] > values["rss_baseline"] > 0
    # A complete run is not resumed: a re-run starts a new one unless given the run id.
    again = invoke_cmd("run", "--experiment", str(TINY_SPEC), "--runner", "host",
                       "--run-id", run_dir.name, results=tmp_path)
    assert again.returncode == 0 and "[ok]" not in again.stderr
    assert "4 already done" in again.stderr


@pytest.mark.slow
def test_ctrl_c_keeps_finished_cells_and_the_rerun_measures_only_the_rest(tmp_path):
    env = dict(os.environ, EDGEREPRO_RESULTS=str(tmp_path))
    command = [sys.executable, "-m", "invoke", "run", "--experiment", str(TINY_SPEC),
               "--runner", "host"]
    child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while not list(tmp_path.glob("*/cells/*.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(child.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == 130, stderr
    assert "interrupted: finished cells are saved" in stderr and "Traceback" not in stderr
    done_before = {p.name: p.read_bytes() for p in tmp_path.glob("*/cells/*.json")}
    assert 1 <= len(done_before) < 4

    resumed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(done_before)}/4 cells already done" in resumed.stderr
    assert resumed.stderr.count("[ok]") == 4 - len(done_before)
    after = {p.name: p.read_bytes() for p in tmp_path.glob("*/cells/*.json")}
    assert len(after) == 4
    assert all(after[name] == content for name, content in done_before.items())


@pytest.mark.slow
def test_neuralscale_and_uniform_end_to_end(invoke_cmd, tmp_path):
    spec = DATA / "tiny_scaling.toml"
    done = invoke_cmd("run", "--experiment", str(spec), "--runner", "host", results=tmp_path,
                      timeout=900)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("[ok]") == 4, done.stderr
    (run_dir,) = [p for p in tmp_path.iterdir() if p.name not in ("cache", "reports")]
    cells = {(c["coords"]["method"], c["coords"]["scale"]): c for c in (
        json.loads(p.read_text()) for p in (run_dir / "cells").glob("*.json"))}
    for (method, scale), cell in cells.items():
        values = record_values(cell["records"])
        assert 0 <= values["accuracy"] <= 1 and values["params"] > 0
        assert cell["settings"]["widths"], (method, scale)  # resolved, also for NeuralScale
    (artifact,) = (tmp_path / "cache" / "neuralscale").glob("*.json")
    searched = json.loads(artifact.read_text())
    # the run keeps the search it measured, and each NeuralScale cell says how it was solved
    assert (run_dir / "neuralscale" / artifact.name).read_text() == artifact.read_text()
    # How many width records this tiny search makes, and whether its pruning stops, depend on
    # the CPU's kernels (training decides), so any of the fits below may come out; the fit is
    # the one that outcome calls for, and each NeuralScale cell is what that fit gives.
    # tests/test_neuralscale.py checks every outcome on constructed records.
    (last,) = searched["iterations"]  # the spec asks for one iteration: its fit is the final one
    fit, records = searched["final_fit"], last["records"]
    kind = fit["kind"]
    if len(records) >= searched["config"]["min_records"]:
        assert kind == "power_law" and fit["n_records"] == len(records), fit
    elif records:  # fewer than 6 records: the first one, as the public fit_params.py
        assert kind == "constant" and fit["widths"] == records[0], fit
    elif last["pruning_stopped"]:  # no record: the widths at the stop, as the public code
        assert kind == "constant" and fit["widths"] == last["final_widths"], (fit, last)
    else:  # no record, epoch limit: no public answer, the start scaled uniformly
        assert kind == "uniform" and fit["reference"] == last["start_widths"], (fit, last)
    for scale in (0.25, 0.5):
        ns_cell = cells[("neuralscale", scale)]
        solution = ns_cell["settings"]["neuralscale_solution"]
        uniform = record_values(cells[("uniform", scale)]["records"])["params"]
        params = record_values(ns_cell["records"])["params"]
        assert solution["artifact"] == artifact.name and solution["fit"] == kind
        assert solution["target"] == uniform and solution["params"] == params
        if kind == "constant":  # VGG: the same architecture at every scale, whatever the target
            assert ns_cell["settings"]["widths"] == fit["widths"], (fit, ns_cell["settings"])
            assert solution["error"] == pytest.approx(params / uniform - 1, rel=1e-9)
        else:  # within 1 % of the uniform model's parameter count (width mode)
            assert abs(params / uniform - 1) <= 0.01 and abs(solution["error"]) <= 0.01
    widths = pl.read_parquet(run_dir / "cells.parquet")["widths"].to_list()
    assert all(json.loads(w) for w in widths)
    report = invoke_cmd("report", results=tmp_path)
    assert report.returncode == 0, report.stderr
    md = next((tmp_path / "reports").glob("*/report.md")).read_text()
    assert "NeuralScale ÷ uniform at equal scale" in md
    assert "**Architectures of vgg11**" in md
    assert f"*NeuralScale fit* ([neuralscale/{artifact.name}]" in md


@pytest.mark.slow
def test_a_kept_search_gives_the_architectures_without_searching(invoke_cmd, tmp_path):
    """Another lab's results/<run>/neuralscale/ in the spec: the same widths, no search job."""
    from toolkit.device.scaling import neuralscale as ns

    kept = tmp_path / "other-lab" / "neuralscale"
    for model in ("mobilenetv2", "vgg11"):
        fit = synthetic_neuralscale_fit(model)
        artifact = ns.build_artifact(model, 10, {"name": "cifar10"}, 0, "paper",
                                     ns.search_config("smoke"), [], fit)
        ns.save_artifact(artifact, str(kept / f"{model}-abc.json"))
    spec = tmp_path / "kept.toml"
    text = (DATA / "tiny_scaling.toml").read_text()
    text = text.replace('method = ["uniform", "neuralscale"]', 'method = ["neuralscale"]')
    text = text.replace("scale = [0.25, 0.5]", "scale = [0.5]")
    text = text[:text.index("neuralscale = {")] + f'neuralscale = {{ artifact = "{kept}" }}\n' \
        + text[text.index("\n", text.index("neuralscale = {")) + 1:]
    spec.write_text(text)
    results = tmp_path / "results"
    done = invoke_cmd("run", "--experiment", str(spec), "--runner", "host", results=results)
    assert done.returncode == 0, done.stderr
    (run_dir,) = [p for p in results.iterdir() if p.name not in ("cache", "reports")]
    (cell,) = [json.loads(p.read_text()) for p in (run_dir / "cells").glob("*.json")]
    assert cell["status"] == "ok", cell["reason"]
    expected = ns.widths_for_ratio(ns.load_artifact(str(kept / "vgg11-abc.json")), 0.5)
    assert cell["settings"]["widths"] == expected["widths"]
    assert cell["settings"]["neuralscale_solution"]["artifact"] == "vgg11-abc.json"
    assert not list((run_dir / "logs").glob("neuralscale*"))  # nothing was searched
    assert (run_dir / "neuralscale" / "vgg11-abc.json").is_file()


@pytest.mark.slow
def test_training_experiment_end_to_end(invoke_cmd, tmp_path):
    spec = DATA / "tiny_training.toml"
    done = invoke_cmd("run", "--experiment", str(spec), "--runner", "host", results=tmp_path,
                      timeout=900)
    assert done.returncode == 0, done.stderr
    (run_dir,) = [p for p in tmp_path.iterdir() if p.name not in ("cache", "reports")]
    cells = [json.loads(p.read_text()) for p in (run_dir / "cells").glob("*.json")]
    by_status = {}
    for cell in cells:
        by_status.setdefault(cell["status"], []).append(cell)
    assert len(by_status["ok"]) == 5  # the peak cell and four fp32 training cells
    assert len(by_status["not run"]) == 4  # fp16 on the CPU, with the reason
    assert all("fp16" in c["reason"] for c in by_status["not run"])
    flops = {}
    for cell in by_status["ok"]:
        values = record_values(cell["records"])
        if cell["kind"] == "peak":
            assert values["peak_flops_fp32"] > 1e8
            continue
        assert values["throughput"] > 0 and values["achieved_flops"] > 0
        flops[(cell["coords"]["framework"], cell["coords"]["freeze"])] = values[
            "train_flops_per_image"]
    for framework in ("pytorch", "onnxruntime-training"):
        assert flops[(framework, 4)] < flops[(framework, 0)]  # freezing removes backward work
    report = invoke_cmd("report", results=tmp_path)
    assert report.returncode == 0, report.stderr
    md = next((tmp_path / "reports").glob("*/report.md")).read_text()
    assert "Speed-up over full fp32 training" in md and "MFU (%)" in md
    assert "not run: fp16" in md
