import pytest
from conftest import DATA, TINY_SPEC

from toolkit.errors import UserError
from toolkit.experiments import spec as specs
from toolkit.experiments.expansion import expand


def test_shipped_scaling_spec_expands_both_methods_for_vgg11_in_smoke():
    resolved = specs.resolve(specs.find_spec("scaling-inference"), "smoke")
    cells = expand(resolved)
    scales = (0.25, 0.5, 0.75, 1.0)
    pairs = [("onnxruntime", "cpu"), ("tensorrt", "cuda")]  # the other two are excluded
    assert [(c.coords["method"], c.coords["scale"], c.coords["framework"], c.coords["device"])
            for c in cells] == [(method, scale, framework, device)
                                for method in ("uniform", "neuralscale") for scale in scales
                                for framework, device in pairs]
    assert {c.coords["model"] for c in cells} == {"vgg11"}
    assert len({c.id for c in cells}) == 16
    # Uniform widths are known now; NeuralScale's come from the search artifact.
    assert all((c.settings["widths"] is None) == (c.coords["method"] == "neuralscale")
               for c in cells)
    paper = expand(specs.resolve(specs.find_spec("scaling-inference"), "paper"))
    # Both conventions: Gealy's parameter ratios and Lee & Lee's width ratios.
    assert len(paper) == 128
    assert {(c.coords["scaling_mode"], c.settings["scaling_mode"]) for c in paper} == {
        ("params", "params"), ("width", "width")}
    quick = expand(specs.resolve(specs.find_spec("scaling-inference"), "quick"))
    assert {c.coords["model"] for c in quick} == {"vgg11", "mobilenetv2", "preact_resnet18",
                                                  "resnet50"}
    assert {(c.settings["scaling_mode"], c.settings["classes"]) for c in quick} == {
        ("params", 100)}
    assert all(c.settings["neuralscale"]["artifact"] == "published" for c in quick)


def test_every_profile_resolves():
    spec = specs.find_spec("scaling-inference")
    protocols = [specs.resolve(spec, p).measure for p in specs.PROFILES]
    assert protocols[0].min_count < protocols[1].min_count < protocols[2].min_count


def test_cell_ids_are_stable_and_change_with_the_config():
    spec = specs.load_spec(TINY_SPEC)
    first = [c.id for c in expand(specs.resolve(spec, "smoke"))]
    again = [c.id for c in expand(specs.resolve(specs.load_spec(TINY_SPEC), "smoke"))]
    other = [c.id for c in expand(specs.resolve(spec, "quick"))]
    assert first == again
    assert not set(first) & set(other)


@pytest.mark.parametrize("call, fragment", [
    (lambda: specs.find_spec("nope"), "unknown experiment 'nope'; valid: scaling-inference"),
    (lambda: specs.resolve(specs.load_spec(TINY_SPEC), "fast"),
     "unknown profile 'fast'; valid: smoke, quick, paper"),
    (lambda: specs.resolve(specs.load_spec(TINY_SPEC), "smoke", {"model": ["vgg12"]}),
     "unknown model 'vgg12'; valid: mobilenetv2, preact_resnet18, resnet50, vgg11, vgg16"),
    (lambda: specs.resolve(specs.load_spec(TINY_SPEC), "smoke", {"batch": [-4]}),
     "grid.batch.0: Input should be greater than or equal to 1 (got -4)"),
    (lambda: specs.resolve(specs.load_spec(TINY_SPEC), "smoke", {"method": ["pruned"]}),
     "grid.method.0: Input should be 'uniform' or 'neuralscale' (got 'pruned')"),
])
def test_bad_input_is_one_line_naming_the_value_and_the_choices(call, fragment):
    with pytest.raises(UserError) as error:
        call()
    assert fragment in str(error.value)
    assert "\n" not in str(error.value)


def test_malformed_and_invalid_toml(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("name = 'x'\n[grid\nmodel = 1\n")
    with pytest.raises(UserError, match="broken.toml: malformed TOML"):
        specs.load_spec(broken)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text(TINY_SPEC.read_text().replace('method = ["uniform"]', 'method = ["magic"]'))
    expected = r"grid.method.0: Input should be 'uniform' or 'neuralscale' \(got 'magic'\)"
    with pytest.raises(UserError, match=expected):
        specs.load_spec(wrong)
    unknown_key = tmp_path / "extra.toml"
    unknown_key.write_text(TINY_SPEC.read_text().replace("threads = 1", "thread = 1"))
    with pytest.raises(UserError, match="settings.thread: Extra inputs are not permitted"):
        specs.load_spec(unknown_key)


def test_exclude_rules_drop_cells_and_must_name_grid_axes(tmp_path):
    text = TINY_SPEC.read_text().replace(
        'kind = "inference"', 'kind = "inference"\nexclude = [{ scale = 0.25 }]')
    (tmp_path / "ok.toml").write_text(text)
    cells = expand(specs.resolve(specs.load_spec(tmp_path / "ok.toml"), "smoke"))
    assert sorted(c.coords["scale"] for c in cells) == [0.125, 0.375, 0.5]
    (tmp_path / "bad.toml").write_text(text.replace("{ scale = 0.25 }", "{ freeze = 5 }"))
    with pytest.raises(UserError, match="bad.toml: exclude.0: freeze is not a grid axis; valid: "
                                        "model, method, scale"):
        specs.load_spec(tmp_path / "bad.toml")


def test_a_kept_neuralscale_search_must_exist(tmp_path):
    spec = tmp_path / "kept.toml"
    spec.write_text((DATA / "tiny_scaling.toml").read_text().replace(
        'neuralscale = { profile = "smoke"', 'neuralscale = { artifact = "no/such.json", '
        'profile = "smoke"'))
    with pytest.raises(UserError) as error:
        specs.resolve(specs.load_spec(spec), "smoke")
    assert "no NeuralScale artifact at 'no/such.json' (a search's JSON file, or a directory" \
        in str(error.value) and "\n" not in str(error.value)


def test_a_scaling_mode_axis_measures_both_conventions_in_one_run():
    """Lee & Lee's r is a width ratio, Gealy's a parameter ratio: the optional grid axis gives
    cells of both, each with its own widths; without the axis no cell has the coordinate (so the
    ids of existing runs stay what they were)."""
    spec = specs.load_spec(TINY_SPEC)
    plain = expand(specs.resolve(spec, "smoke"))
    assert all("scaling_mode" not in c.coords for c in plain)
    both = expand(specs.resolve(spec, "smoke", {"scaling_mode": ["width", "params"],
                                                "scale": [0.25]}))
    by_mode = {c.coords["scaling_mode"]: c for c in both if c.coords["method"] == "uniform"}
    assert {c.settings["scaling_mode"] for c in by_mode.values()} == {"width", "params"}
    assert by_mode["width"].settings["widths"] != by_mode["params"].settings["widths"]
    with pytest.raises(UserError, match="scaling_mode"):
        specs.resolve(spec, "smoke", {"scaling_mode": ["flops"]})
