"""Accuracy training (PyTorch): protocol defaults, determinism, caching, resuming, learning."""

import io

import pytest

from toolkit.device import data, models
from toolkit.device.backends.pytorch import accuracy as pa
from toolkit.errors import UserError

TINY = {"epochs": 2, "batch": 32, "max_batches_per_epoch": 3, "log_every": 1}
WIDTHS = models.scale_widths("vgg11", 0.0625)  # [4, 8, 16, 16, 32, 32, 32, 32]


def _numbers(history):
    """History without the timing fields (those differ between identical runs)."""
    return [{k: v for k, v in h.items() if k not in ("seconds", "img_per_s")} for h in history]


@pytest.fixture(scope="module")
def small():
    return data.synthetic(n_train=200, n_test=64, seed=0)


def test_protocol_defaults():
    cfg = pa.training_config()
    assert (cfg["lr"], cfg["momentum"], cfg["weight_decay"], cfg["batch"], cfg["epochs"]) == \
        (0.1, 0.5, 5e-4, 128, 300)
    assert cfg["milestones"] == [100, 200, 250] and cfg["augment"] is True
    assert [pa.lr_at(e, cfg) for e in (1, 99, 100, 199, 200, 250, 300)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.0001, 0.0001])
    assert pa.training_config(momentum=0.9)["momentum"] == 0.9
    with pytest.raises(UserError, match="unknown training setting"):
        pa.training_config(learning_rate=0.1)
    with pytest.raises(UserError, match="positive integer"):
        pa.training_config(batch=0)


def test_cache_key_covers_what_changes_the_result(small):
    cfg = pa.training_config(**TINY)
    key = pa.cache_key("vgg11", WIDTHS, 10, small.identity, cfg, 0)
    assert key == pa.cache_key("vgg11", WIDTHS, 10, small.identity, dict(cfg, log_every=7), 0)
    others = [pa.cache_key("vgg11", WIDTHS, 10, small.identity, cfg, 1),
              pa.cache_key("vgg11", WIDTHS, 10, small.identity, dict(cfg, momentum=0.9), 0),
              pa.cache_key("vgg11", WIDTHS[:-1] + [31], 10, small.identity, cfg, 0),
              pa.cache_key("vgg11", WIDTHS, 10, "other data", cfg, 0),
              pa.cache_key("vgg16", WIDTHS, 10, small.identity, cfg, 0)]
    assert key not in others and len(set(others)) == len(others)


def test_deterministic_and_cached(small, tmp_path, monkeypatch):
    log = io.StringIO()
    first = pa.train_accuracy("vgg11", WIDTHS, small, TINY, seed=0, cache_dir=str(tmp_path),
                              log=log)
    assert first["cached"] is False and first["complete"] and first["epochs_done"] == 2
    assert len(first["history"]) == 2 and 0 <= first["max_test_acc"] <= 1
    assert first["max_test_acc"] == max(h["test_acc"] for h in first["history"])
    assert first["params"] == models.count_params("vgg11", WIDTHS)
    assert "step 3/3" in log.getvalue() and "epoch 2/2" in log.getvalue()
    uncached = pa.train_accuracy("vgg11", WIDTHS, small, TINY, seed=0, log=io.StringIO())
    assert _numbers(uncached["history"]) == _numbers(first["history"])  # same seed

    def boom(*args, **kwargs):
        raise AssertionError("trained although the result is cached")

    monkeypatch.setattr(pa, "train_epoch", boom)
    again = pa.train_accuracy("vgg11", WIDTHS, small, TINY, seed=0, cache_dir=str(tmp_path),
                              log=io.StringIO())
    assert again["cached"] is True and again["history"] == first["history"]
    assert again["key"] == first["key"]
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json"]  # checkpoint removed


def test_interrupted_run_resumes_to_the_same_result(small, tmp_path):
    whole = pa.train_accuracy("vgg11", WIDTHS, small, TINY, seed=2, log=io.StringIO())
    part = pa.train_accuracy("vgg11", WIDTHS, small, TINY, seed=2, cache_dir=str(tmp_path),
                             stop_after=1, log=io.StringIO())
    assert part["complete"] is False and part["epochs_done"] == 1
    assert len(list(tmp_path.glob("*.ckpt"))) == 1 and not list(tmp_path.glob("*.json"))
    log = io.StringIO()
    rest = pa.train_accuracy("vgg11", WIDTHS, small, TINY, seed=2, cache_dir=str(tmp_path),
                             log=log)
    assert "resuming after epoch 1" in log.getvalue()
    assert _numbers(rest["history"]) == _numbers(whole["history"])


@pytest.mark.slow
def test_small_vgg11_learns_digits_above_50_percent(tmp_path):
    ds = data.digits(seed=0)
    result = pa.train_accuracy(
        "vgg11", models.scale_widths("vgg11", 0.125), ds,
        {"epochs": 6, "batch": 64, "milestones": [5], "log_every": 0}, seed=0,
        cache_dir=str(tmp_path), log=io.StringIO())
    assert result["max_test_acc"] > 0.5, result["history"]
    synthetic = pa.train_accuracy(
        "vgg11", models.scale_widths("vgg11", 0.125), data.synthetic(1000, 300, seed=0),
        {"epochs": 4, "batch": 64, "milestones": [3], "log_every": 0}, seed=0, log=io.StringIO())
    assert synthetic["max_test_acc"] > 0.5, synthetic["history"]
