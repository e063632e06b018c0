"""The NeuralScale searches published with the paper (eugenelet/NeuralScale prune_record/), shipped
as artifacts: they load, fit our models, solve to the paper's architectures, are reproduced by the
converter from the public repository, and `neuralscale = { artifact = "published" }` uses them."""
import json
import math
import os
import shutil
from pathlib import Path

import pytest
from conftest import DATA

from toolkit import artifacts
from toolkit.device import models
from toolkit.device.scaling import neuralscale as ns
from toolkit.device.scaling import published
from toolkit.errors import UserError
from toolkit.experiments import kinds
from toolkit.experiments import spec as specs
from toolkit.experiments.cells import Cell
from toolkit.experiments.expansion import expand
from toolkit.experiments.kinds.inference import prepare as ns_prepare

SHIPPED = Path(published.PUBLISHED_DIR)
ENTRIES = published.RECORD_SETS
IDS = [f"{e['model']}-{e['dataset']}" for e in ENTRIES]
# The public repository: only where EDGEREPRO_NEURALSCALE_REPO names a clone (else those tests
# skip and say how to get one).
PUBLIC_REPO = os.environ.get("EDGEREPRO_NEURALSCALE_REPO", "")
NO_PUBLIC_REPO = ("needs the public code: git clone https://github.com/eugenelet/NeuralScale "
                  "&& git -C NeuralScale checkout 67ddedc, then set EDGEREPRO_NEURALSCALE_REPO "
                  "to that directory")
# Relative tolerance for a fitted float computed on this CPU against the shipped one: the fit is
# a float64 least squares on ln tau (condition number of the design <= 200 for the shipped
# record sets), whose result moves with the CPU's kernels (AVX-512 or not, the BLAS's order of
# summation) by about cond^2 x eps x |ln alpha| ~ 1e-11; 1e-9 leaves 100x room and still fails
# on any change of the data (one channel more in one record moves a fit by more than 1e-6).
FIT_RTOL = 1e-9

# Least R^2 (per layer, log space) of each final fit, and its mean over the layers: the converted
# fits are these numbers (with a little slack), so a wrong column order or tau would show here.
R2_FLOOR = {"vgg11-cifar10": (0.99, 0.995), "vgg11-cifar100": (0.99, 0.995),
            "mobilenetv2-cifar100": (0.98, 0.99), "preact_resnet18-cifar100": (0.93, 0.98),
            "preact_resnet18-cifar10": (0.82, 0.975)}

# VGG-11 on CIFAR-10 at width ratios 0.25 / 0.5 / 0.75 / 1.0 as the public code builds it for the
# paper's training runs (eugenelet/NeuralScale ratio_swipe.py -> model/VGG.py prepare_filters
# with prune_record/vgg_10_eff_c10.pk, descent_idx 14: 2000 steps of its tau update, int widths),
# worked out from that .pk during the conversion; our refit of the CSV equals that fit to 1e-13.
PAPER_VGG11_CIFAR10 = {
    0.25: [88, 132, 137, 120, 82, 56, 31, 53],
    0.5: [137, 230, 270, 276, 187, 127, 60, 80],
    0.75: [177, 315, 399, 442, 299, 201, 86, 101],
    1.0: [211, 392, 523, 615, 415, 278, 111, 120],
}


def _artifact(entry):
    return ns.load_artifact(str(SHIPPED / published.artifact_name(entry["model"],
                                                                    entry["dataset"])))


def test_the_shipped_folder_holds_exactly_the_converted_record_sets():
    assert sorted(p.name for p in SHIPPED.glob("*.json")) == sorted(f"{i}.json" for i in IDS)
    assert sum(p.stat().st_size for p in SHIPPED.glob("*.json")) < 2_000_000


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_a_shipped_artifact_loads_and_is_of_our_model(entry):
    art = _artifact(entry)
    model, classes = entry["model"], entry["classes"]
    assert (art["model"], art["classes"], art["profile"]) == (model, classes, "published")
    assert art["dataset"] == {"name": entry["dataset"], "classes": classes}
    assert art["full_widths"] == models.full_widths(model)
    provenance = art["provenance"]
    assert provenance["source"] == "published"
    assert provenance["repository"] == "eugenelet/NeuralScale"
    assert provenance["commit"] == "67ddedc19880d8e2e93304b07305e6ede8d76212"
    assert provenance["converted_by"] == "toolkit/device/scaling/published.py"
    name = entry["record_set"]
    assert provenance["paths"] == [f"prune_record/{name}_{i}.csv" for i in range(15)] + [
        entry["model_file"]]
    assert len(art["iterations"]) == 15
    n_layers = len(models.full_widths(model))
    for index, iteration in enumerate(art["iterations"]):
        assert iteration["index"] == index and iteration["records"]
        assert all(len(r) == n_layers and min(r) >= 1 for r in iteration["records"])
        assert iteration["record_params"] == [models.count_params(model, r, classes)
                                              for r in iteration["records"]]


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_the_final_fit_is_our_power_law_of_the_last_iteration(entry):
    art = _artifact(entry)
    fit, last = art["final_fit"], art["iterations"][published.FINAL_ITERATION]
    assert fit == last["fit"] and fit["kind"] == "power_law" and fit["fallback"] is None
    assert fit["n_records"] == len(last["records"]) >= ns.MIN_RECORDS
    again = ns.fit_power_law(entry["model"], last["records"], entry["classes"])
    assert again["alpha"] == pytest.approx(fit["alpha"], rel=FIT_RTOL)
    assert again["beta"] == pytest.approx(fit["beta"], rel=FIT_RTOL)
    least, mean = R2_FLOOR[f"{entry['model']}-{entry['dataset']}"]
    assert min(fit["r2"]) >= least and sum(fit["r2"]) / len(fit["r2"]) >= mean, fit["r2"]
    assert all(b > 0 for b in fit["beta"])  # every layer grows with the budget


def test_iteration_0_of_vgg11_cifar10_is_a_copy_in_the_public_repository():
    """prune_record/vgg_10_eff_c10_0.csv is byte-identical to _1.csv and wider than VGG-11: the
    converter keeps it, marked, and it does not touch the final fit."""
    art = _artifact(ENTRIES[0])
    first = art["iterations"][0]
    assert first["duplicate_of"] == 1 and first["records"] == art["iterations"][1]["records"]
    assert "not iteration 0's" in first["note"]
    assert not any("duplicate_of" in it for entry in ENTRIES[1:]
                   for it in _artifact(entry)["iterations"])


def test_published_vgg11_cifar10_architectures_are_the_papers():
    art = _artifact(ENTRIES[0])
    assert (art["model"], art["classes"]) == ("vgg11", 10)
    stored = {e["ratio"]: e["widths"] for e in art["architectures"] if e["mode"] == "width"}
    for ratio, widths in PAPER_VGG11_CIFAR10.items():
        solved = ns.widths_for_ratio(art, ratio, "width")
        assert solved["widths"] == widths == stored[ratio]
        assert abs(solved["error"]) < 0.002


def test_published_full_widths_and_records_are_read_as_the_public_code_does():
    vgg = "cfg = {\n    'A': [64, 'M', 128, 'M', 256, 256, 'M', 512, 512, 'M', 512, 512, 'M'],\n}"
    assert published.public_full_widths(vgg, "vgg11") == models.full_widths("vgg11")
    resnet = ("    if filters==None:\n        filters = [[64],[64,64],[64,64],[128,128],[128,128],"
              "[256,256],[256,256],[512,512],[512,512]]\n")
    assert published.public_full_widths(resnet, "preact_resnet18") == \
        models.full_widths("preact_resnet18")
    assert published.read_records(b"1,2,3,4,5,6,7,8\r\n8,7,6,5,4,3,2,1\r\n", "vgg11", "x.csv") \
        == [[1, 2, 3, 4, 5, 6, 7, 8], [8, 7, 6, 5, 4, 3, 2, 1]]
    with pytest.raises(UserError, match="x.csv: a vgg11 record has 8 positive widths"):
        published.read_records(b"1,2,3\r\n", "vgg11", "x.csv")
    with pytest.raises(UserError, match="not a git repository"):
        published.repository_reader(str(DATA))


def assert_same_json(got, want, rtol: float, where: str = "") -> None:
    """`got` has `want`'s structure, keys, strings, ints, booleans and nulls exactly, and its
    floats within `rtol` (see FIT_RTOL): byte equality of floating-point output is not a
    property any CPU keeps."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), where
        for key in want:
            assert_same_json(got[key], want[key], rtol, f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for index, (a, b) in enumerate(zip(got, want, strict=True)):
            assert_same_json(a, b, rtol, f"{where}[{index}]")
    elif isinstance(want, float) or isinstance(got, float):
        assert not isinstance(got, bool | str) and got is not None, where
        assert math.isclose(got, want, rel_tol=rtol, abs_tol=rtol), (where, got, want)
    else:  # str, int, bool, None
        assert type(got) is type(want) and got == want, (where, got, want)


def test_the_structural_comparison_fails_where_it_must():
    same = {"a": [1, 2.0, "x", None, True], "fit": {"beta": [0.5]}}
    assert_same_json({"a": [1, 2.0 * (1 + 1e-12), "x", None, True], "fit": {"beta": [0.5]}},
                     same, FIT_RTOL)
    for other in ({"a": [1, 2.0, "x", None, True], "fit": {"beta": [0.5 + 1e-6]}},
                  {"a": [2, 2.0, "x", None, True], "fit": {"beta": [0.5]}},
                  {"a": [1, 2.0, "y", None, True], "fit": {"beta": [0.5]}},
                  {"a": [1, 2.0, "x", None], "fit": {"beta": [0.5]}},
                  {"a": [1, 2.0, "x", None, 1], "fit": {"beta": [0.5]}},
                  {"a": [1, 2.0, "x", None, True], "fit": {"beta": [0.5]}, "b": 1}):
        with pytest.raises(AssertionError):
            assert_same_json(other, same, FIT_RTOL)


@pytest.mark.skipif(not PUBLIC_REPO, reason=NO_PUBLIC_REPO)
def test_the_converter_reproduces_the_shipped_files(tmp_path):
    """Integers, strings and width lists exactly, fitted floats within their tolerance; a solved
    tau moves with the fit by 1/beta times its relative change (tau = (w / alpha)^(1/beta))."""
    written = published.convert(PUBLIC_REPO, str(tmp_path))
    assert [Path(p).name for p in written] == [f"{i}.json" for i in IDS]
    for path in written:
        got = json.loads(Path(path).read_text())
        want = json.loads((SHIPPED / Path(path).name).read_text())
        rtol = FIT_RTOL / min(b for b in want["final_fit"]["beta"] if b > 0)
        assert_same_json(got, want, rtol, Path(path).name)


def test_models_and_class_counts_without_a_published_search_say_why():
    assert published.unavailable("vgg11", 10) is None
    assert "ResNet-50 is not in the public NeuralScale code" in published.unavailable(
        "resnet50", 10)
    assert "has no mobilenetv2 search with 10 classes (its searches of mobilenetv2: " \
        "cifar100)" in published.unavailable("mobilenetv2", 10)


def _published_spec(tmp_path: Path) -> Path:
    text = (DATA / "tiny_scaling.toml").read_text()
    text = text.replace('model = ["vgg11"]', 'model = ["vgg11", "resnet50"]')
    text = text.replace('method = ["uniform", "neuralscale"]', 'method = ["neuralscale"]')
    text = text.replace('framework = ["onnxruntime"]', 'framework = ["pytorch"]')
    text = text.replace('dataset = "digits"', 'dataset = "cifar10"')
    start = text.index("accuracy_training = {")
    text = text[:start] + text[text.index("\n", text.index("neuralscale = {")) + 1:]
    text = text.replace("[profiles.smoke.measure]",
                        'neuralscale = { artifact = "published" }\n\n[profiles.smoke.measure]')
    path = tmp_path / "published.toml"
    path.write_text(text)
    return path


def test_a_spec_with_the_published_artifact_gives_the_papers_widths(tmp_path):
    resolved = specs.resolve(specs.load_spec(_published_spec(tmp_path)), "smoke")
    assert resolved.settings.neuralscale == {"artifact": "published"}
    cells = {(c.coords["model"], c.coords["scale"]): c for c in expand(resolved)}

    def no_job(*args):
        raise AssertionError(f"nothing is searched, trained or exported: {args[0]}")

    for scale in (0.25, 0.5):
        settings, paths, _ = kinds.prepare(cells[("vgg11", scale)], tmp_path / "cache",
                                               no_job)
        assert settings["widths"] == PAPER_VGG11_CIFAR10[scale]
        assert Path(paths["neuralscale"]) == SHIPPED / "vgg11-cifar10.json"
        assert settings["neuralscale_solution"]["artifact"] == "vgg11-cifar10.json"
    with pytest.raises(artifacts.PreparationFailed) as failed:
        kinds.prepare(cells[("resnet50", 0.25)], tmp_path / "cache", no_job)
    message = str(failed.value)
    assert "ResNet-50 is not in the public NeuralScale code" in message, message
    assert "has to be searched" in message and "method neuralscale with a search profile" \
        in message and "\n" not in message


def test_a_kept_search_is_chosen_by_data_set_where_several_match(tmp_path):
    source = json.loads((SHIPPED / "vgg11-cifar10.json").read_text())
    for name, dataset in (("a.json", "digits"), ("b.json", "cifar10")):
        (tmp_path / name).write_text(json.dumps(source | {"dataset": {"name": dataset}}))
    shutil.copy(SHIPPED / "vgg11-cifar100.json", tmp_path / "c.json")

    def cell(dataset: str, classes: int = 10) -> Cell:
        return Cell("x", "inference", {"model": "vgg11"},
                    {"model": "vgg11", "classes": classes, "dataset": dataset}, {})

    assert ns_prepare.kept_search(tmp_path, cell("cifar10")).name == "b.json"
    assert ns_prepare.kept_search(tmp_path, cell("digits")).name == "a.json"
    assert ns_prepare.kept_search(tmp_path, cell("synthetic")).name == "a.json"  # first by name
    assert ns_prepare.kept_search(tmp_path, cell("cifar100", 100)).name == "c.json"
    assert ns_prepare.kept_search(Path("published"), cell("digits", 100)).name == \
        "vgg11-cifar100.json"


def test_published_with_search_options_searches_only_what_the_public_code_lacks(tmp_path):
    """`{ artifact = "published", profile = ... }`: the paper's architectures where the public
    code has them, a search with those options for ResNet-50 (never searched there)."""
    path = _published_spec(tmp_path)
    path.write_text(path.read_text().replace('neuralscale = { artifact = "published" }',
                                             'neuralscale = { artifact = "published", '
                                             'profile = "smoke", iterations = 1 }'))
    resolved = specs.resolve(specs.load_spec(path), "smoke")
    cells = {(c.coords["model"], c.coords["scale"]): c for c in expand(resolved)}
    jobs = []

    def search(name, job, timeout):
        jobs.append(job)
        return "stopped here: the test only checks which job runs"

    settings, _, _ = kinds.prepare(cells[("vgg11", 0.25)], tmp_path / "cache", search)
    assert settings["widths"] == PAPER_VGG11_CIFAR10[0.25] and not jobs
    assert settings["neuralscale_solution"]["source"] == "published"
    with pytest.raises(artifacts.PreparationFailed, match="stopped here"):
        kinds.prepare(cells[("resnet50", 0.25)], tmp_path / "cache", search)
    (job,) = jobs
    assert job["kind"] == "neuralscale_search"
    assert job["settings"]["neuralscale"] == {"profile": "smoke", "iterations": 1}
    bad = path.read_text().replace("iterations = 1", "iterations = 0")
    path.write_text(bad)
    with pytest.raises(UserError, match="iterations"):
        specs.resolve(specs.load_spec(path), "smoke")
