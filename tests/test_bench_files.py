"""Bench files record the machine that made them; two files compare as B ÷ A."""
import json
import sys
from pathlib import Path

import pytest

from toolkit import bench_files
from toolkit.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def test_a_bench_file_records_cpu_isa_cores_and_versions(tmp_path):
    machine = bench_files.machine_record(REPO)
    assert machine["cpu"] and machine["cores"] >= 1 and machine["cores_usable"] >= 1
    assert set(machine["isa"]) <= set(bench_files.ISA_FLAGS)
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if " avx2 " in cpuinfo:
        assert "avx2" in machine["isa"]
    assert machine["versions"]["python"] == ".".join(map(str, sys.version_info[:3]))
    assert "polars" in machine["versions"]
    path = tmp_path / "a.json"
    bench_files.write(path, {"x": {"seconds": 1.0, "met": True, "target": "t"}}, machine)
    assert json.loads(path.read_text())["format"] == bench_files.FORMAT
    assert bench_files.read(path) == (machine, {"x": {"seconds": 1.0, "met": True,
                                                      "target": "t"}})


def test_compare_gives_every_common_figure_as_b_over_a(tmp_path):
    machine = {"cpu": "Test CPU", "machine": "x86_64", "cores_usable": 2}
    bench_files.write(tmp_path / "a.json", {"train": {"images_per_s": 100.0, "steps": 4,
                                                      "met": True, "target": "t"},
                                            "only_a": {"s": 1.0}}, machine)
    bench_files.write(tmp_path / "b.json", {"train": {"images_per_s": 80.0, "steps": 4,
                                                      "met": False, "target": "t"}}, machine)
    rows, warnings = bench_files.compare(tmp_path / "a.json", tmp_path / "b.json")
    assert warnings == []
    assert [(r.benchmark, r.figure, r.ratio) for r in rows] == [
        ("train", "images_per_s", pytest.approx(0.8)), ("train", "steps", 1.0)]
    other = machine | {"cores_usable": 4}
    bench_files.write(tmp_path / "c.json", {"train": {"images_per_s": 80.0}}, other)
    _, warnings = bench_files.compare(tmp_path / "a.json", tmp_path / "c.json")
    assert warnings == ["different machines (cores_usable 2 vs 4): the ratios mix machine "
                        "and code"]
    (tmp_path / "old.json").write_text(json.dumps({"train": {"images_per_s": 50.0}}))
    rows, warnings = bench_files.compare(tmp_path / "old.json", tmp_path / "a.json")
    assert rows[0].ratio == pytest.approx(2.0) and "records no machine" in warnings[0]


def test_compare_arguments_are_checked(tmp_path):
    (tmp_path / "20260101-000000.json").write_text("{}")
    a, b = bench_files.pair("20260101-000000, 20260101-000000", tmp_path)
    assert a == b == tmp_path / "20260101-000000.json"
    with pytest.raises(UserError, match="needs two bench files A,B"):
        bench_files.pair("one", tmp_path)
    with pytest.raises(UserError, match="no bench file 'nope'; give a path or one of: "
                       "20260101-000000"):
        bench_files.pair("nope,20260101-000000", tmp_path)


def test_compare_names_a_benchmark_that_failed_and_compares_the_rest(tmp_path):
    machine = {"cpu": "Test CPU", "machine": "x86_64", "cores_usable": 2}
    ok = {"search": {"vgg11_minutes": 2.0, "met": True, "target": "t"},
          "train": {"images_per_s": 100.0, "met": True, "target": "t"}}
    failed = ok | {"search": {"failed": "UserError: no architecture", "met": False,
                              "target": "t"}}
    bench_files.write(tmp_path / "a.json", ok, machine)
    bench_files.write(tmp_path / "b.json", failed, machine)
    rows, warnings = bench_files.compare(tmp_path / "a.json", tmp_path / "b.json")
    assert [(r.benchmark, r.figure, r.ratio) for r in rows] == [("train", "images_per_s", 1.0)]
    assert warnings == ["search failed in B: UserError: no architecture"]
