"""Accuracy training with PyTorch: the NeuralScale training protocol (as in
eugenelet/NeuralScale's train.py).

`train_accuracy(model, widths, dataset, config, seed, cache_dir)` trains a zoo model from
scratch and returns the maximum test accuracy over epochs and the per-epoch history. All
hyper-parameters live in one config dict (`training_config()`: defaults < overrides, validated);
the result is cached under a content hash of (model, widths, classes, data set identity,
config, seed) in `cache_dir`, with an epoch checkpoint beside it, so a repeated call returns the
cached result without training and an interrupted one resumes where it stopped.

Determinism: the model is built with build_model(seed); shuffling and augmentation use a numpy
PCG64 generator seeded from (seed, 1), torch's RNG is seeded with `seed`, and both generators'
states are checkpointed. Identical runs give identical numbers on the same machine, torch build
and thread count (CPU float reductions depend on the thread count: it is recorded).

Accuracies are fractions in [0, 1]. Progress goes to `log` (stderr by default) as compact lines.
Device side: Python 3.6 syntax, stdlib + numpy + torch (imported lazily).
"""

import hashlib
import json
import os
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from toolkit.device import data as data_mod
from toolkit.device import models
from toolkit.errors import UserError

CACHE_FORMAT = 1  # bump when the training loop changes what a config produces

# The public NeuralScale code's CIFAR protocol: SGD, lr 0.1 x0.1 at epochs 100/200/250 of 300,
# weight decay 5e-4, batch 128, momentum 0.5 (its argparse default), crop + flip augmentation.
DEFAULTS = {
    "epochs": 300,
    "batch": 128,
    "lr": 0.1,
    "momentum": 0.5,
    "nesterov": False,
    "weight_decay": 5e-4,
    "milestones": [100, 200, 250],  # epochs (1-based) from which lr is multiplied by gamma again
    "gamma": 0.1,
    "augment": True,  # random crop 32 (pad 4) + horizontal flip
    "drop_last": False,
    "eval_batch": 500,
    "log_every": 50,  # progress line every N steps (0: only per epoch)
    "max_batches_per_epoch": 0,  # 0 = full epochs; > 0 caps them (smoke profiles)
}
# Settings that do not change the numbers, so they are left out of the cache key.
_NOT_IN_KEY = ("log_every", "eval_batch")


def training_config(**overrides) -> Dict[str, Any]:
    """A complete, validated training configuration (defaults < overrides)."""
    unknown = sorted(set(overrides) - set(DEFAULTS))
    if unknown:
        raise UserError("unknown training setting(s): {}; valid: {}".format(
            ", ".join(unknown), ", ".join(sorted(DEFAULTS))))
    cfg = dict(DEFAULTS)
    cfg.update(overrides)
    for key in ("epochs", "batch", "eval_batch"):
        if int(cfg[key]) != cfg[key] or cfg[key] < 1:
            raise UserError("training {} must be a positive integer, got {!r}".format(
                key, cfg[key]))
    for key in ("lr", "momentum", "weight_decay", "gamma"):
        if float(cfg[key]) < 0:
            raise UserError("training {} must be >= 0, got {!r}".format(key, cfg[key]))
    cfg["milestones"] = sorted(int(m) for m in cfg["milestones"])
    return cfg


def lr_at(epoch: int, cfg: Dict[str, Any]) -> float:
    """Step schedule: lr * gamma ** (number of milestones <= epoch); epochs are 1-based."""
    return float(cfg["lr"]) * float(cfg["gamma"]) ** sum(1 for m in cfg["milestones"]
                                                         if epoch >= m)


def cache_key(model: str, widths: Sequence[int], classes: int, dataset_identity: str,
              cfg: Dict[str, Any], seed: int) -> str:
    """sha256 over everything that determines the result."""
    payload = {"format": CACHE_FORMAT, "model": model, "widths": [int(w) for w in widths],
               "classes": int(classes), "dataset": dataset_identity, "seed": int(seed),
               "config": {k: v for k, v in sorted(cfg.items()) if k not in _NOT_IN_KEY}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()


# ------------------------------------------------------------------------------- shared pieces


def make_optimizer(params, cfg: Dict[str, Any]):
    import torch

    return torch.optim.SGD(params, lr=float(cfg["lr"]), momentum=float(cfg["momentum"]),
                           weight_decay=float(cfg["weight_decay"]),
                           nesterov=bool(cfg.get("nesterov", False)))


def set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def to_tensor(x: np.ndarray, dataset):
    import torch

    return torch.from_numpy(data_mod.normalize(x, dataset.mean, dataset.std))


def evaluate(net, dataset, batch: int = 500) -> Dict[str, float]:
    """Test loss and accuracy (eval mode, no grad); restores the previous mode."""
    import torch

    was_training = net.training
    net.eval()
    loss_sum, correct, n = 0.0, 0, len(dataset.y_test)
    with torch.no_grad():
        for start in range(0, n, batch):
            x = to_tensor(dataset.x_test[start:start + batch], dataset)
            y = torch.from_numpy(dataset.y_test[start:start + batch])
            out = net(x)
            loss_sum += float(torch.nn.functional.cross_entropy(out, y, reduction="sum"))
            correct += int((out.argmax(1) == y).sum())
    net.train(was_training)
    return {"loss": loss_sum / max(n, 1), "acc": correct / float(max(n, 1))}


def train_epoch(net, optimizer, dataset, rng: np.random.Generator, cfg: Dict[str, Any],
                epoch: int = 1, on_step: Optional[Callable[[int], bool]] = None,
                log=None, label: str = "train") -> Dict[str, Any]:
    """One epoch of SGD on dataset's train split; batches shuffled and augmented with `rng`.

    `on_step(step)` is called after each backward pass and before the optimizer step (gradients
    are in place); returning False ends the epoch early ("stopped": True). Returns {"loss", "acc"
    (train, over the batches run), "steps", "images", "seconds", "stopped"}.
    """
    import torch

    net.train()
    batches = data_mod.batch_indices(len(dataset.y_train), int(cfg["batch"]), rng,
                                     drop_last=bool(cfg.get("drop_last", False)))
    cap = int(cfg.get("max_batches_per_epoch", 0) or 0)
    if cap:
        batches = batches[:cap]
    log_every = int(cfg.get("log_every", 0) or 0)
    loss_sum, correct, images, stopped = 0.0, 0, 0, False
    started = last = time.time()
    last_images = 0
    for step, idx in enumerate(batches, 1):
        x = dataset.x_train[idx]
        if cfg.get("augment", True):
            x = data_mod.augment(x, rng)
        xt, yt = to_tensor(x, dataset), torch.from_numpy(dataset.y_train[idx])
        optimizer.zero_grad()
        out = net(xt)
        loss = torch.nn.functional.cross_entropy(out, yt)
        loss.backward()
        keep_going = on_step(step) if on_step is not None else True
        optimizer.step()
        loss_sum += float(loss.detach()) * len(idx)
        correct += int((out.argmax(1) == yt).sum())
        images += len(idx)
        if log is not None and log_every and step % log_every == 0:
            now = time.time()
            log.write("{} epoch {} step {}/{} loss {:.4f} acc {:.3f} {:.0f} img/s\n".format(
                label, epoch, step, len(batches), loss_sum / images, correct / float(images),
                (images - last_images) / max(now - last, 1e-9)))
            log.flush()
            last, last_images = now, images
        if keep_going is False:
            stopped = True
            break
    return {"loss": loss_sum / max(images, 1), "acc": correct / float(max(images, 1)),
            "steps": step if batches else 0, "images": images,
            "seconds": time.time() - started, "stopped": stopped}


def data_rng(seed: int) -> np.random.Generator:
    """The shuffling/augmentation generator of a run: its own stream, independent of seed's use
    for the model init."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), 1])))


# ------------------------------------------------------------------------------- train_accuracy


def train_accuracy(model: str, widths: Sequence[int], dataset, config: Optional[Dict] = None,
                   seed: int = 0, cache_dir: Optional[str] = None, log=None,
                   stop_after: Optional[int] = None,
                   keep_checkpoint: bool = False) -> Dict[str, Any]:
    """Train build_model(model, widths, dataset.classes, seed) with `config` (training_config
    overrides) and evaluate on the test split after every epoch.

    Returns {"max_test_acc", "best_epoch", "final_test_acc", "history": [per epoch: epoch, lr,
    train_loss, train_acc, test_loss, test_acc, seconds, img_per_s], "epochs_done", "complete",
    "params", "model", "widths", "classes", "dataset" (describe()), "seed", "config" (resolved),
    "key", "cached" (True when returned from the cache without training), "train_seconds",
    "versions"}.

    With `cache_dir`: a finished result is returned from <key>.json; otherwise training resumes
    from <key>.ckpt (saved after every epoch) if present. `stop_after=N` trains at most N more
    epochs in this call and returns the partial result ("complete": False; not cached as final).
    """
    import torch

    cfg = training_config(**(config or {}))
    widths = [int(w) for w in widths]
    classes = dataset.classes
    key = cache_key(model, widths, classes, dataset.identity, cfg, seed)
    log = sys.stderr if log is None else log
    result_path = ckpt_path = None
    if cache_dir:
        if not os.path.isdir(cache_dir):
            os.makedirs(cache_dir)
        result_path = os.path.join(cache_dir, key + ".json")
        ckpt_path = os.path.join(cache_dir, key + ".ckpt")
        if os.path.isfile(result_path):
            with open(result_path) as f:
                cached = json.load(f)
            cached["cached"] = True
            log.write("train {} {}: cached result {} (max test acc {:.4f})\n".format(
                model, widths, result_path, cached["max_test_acc"]))
            return cached

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        net = models.build_model(model, widths, classes, seed)
        optimizer = make_optimizer(net.parameters(), cfg)
        rng = data_rng(seed)
        history: List[Dict[str, Any]] = []
        spent = 0.0
        if ckpt_path and os.path.isfile(ckpt_path):
            state = torch.load(ckpt_path, map_location="cpu", weights_only=False) \
                if _has_weights_only() else torch.load(ckpt_path, map_location="cpu")
            net.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            rng.bit_generator.state = state["numpy_rng"]
            torch.set_rng_state(state["torch_rng"])
            history, spent = state["history"], state["train_seconds"]
            log.write("train {} {}: resuming after epoch {}\n".format(model, widths, len(history)))
        done_now = 0
        epochs = int(cfg["epochs"])
        while len(history) < epochs and (stop_after is None or done_now < int(stop_after)):
            epoch = len(history) + 1
            lr = lr_at(epoch, cfg)
            set_lr(optimizer, lr)
            stats = train_epoch(net, optimizer, dataset, rng, cfg, epoch=epoch, log=log,
                                label="train {}".format(model))
            test = evaluate(net, dataset, int(cfg["eval_batch"]))
            spent += stats["seconds"]
            history.append({"epoch": epoch, "lr": lr, "train_loss": stats["loss"],
                            "train_acc": stats["acc"], "test_loss": test["loss"],
                            "test_acc": test["acc"], "seconds": stats["seconds"],
                            "img_per_s": stats["images"] / max(stats["seconds"], 1e-9)})
            best = max(h["test_acc"] for h in history)
            log.write("train {} epoch {}/{} lr {:g} loss {:.4f} acc {:.4f} test loss {:.4f} acc "
                      "{:.4f} (max {:.4f}) {:.1f}s {:.0f} img/s\n".format(
                          model, epoch, epochs, lr, stats["loss"], stats["acc"], test["loss"],
                          test["acc"], best, stats["seconds"], history[-1]["img_per_s"]))
            log.flush()
            done_now += 1
            if ckpt_path:
                _atomic_torch_save({"model": net.state_dict(), "optimizer": optimizer.state_dict(),
                                    "numpy_rng": rng.bit_generator.state,
                                    "torch_rng": torch.get_rng_state(), "history": history,
                                    "train_seconds": spent}, ckpt_path)

    accs = [h["test_acc"] for h in history]
    best_index = int(np.argmax(accs)) if accs else -1
    result = {
        "max_test_acc": float(accs[best_index]) if accs else None,
        "best_epoch": history[best_index]["epoch"] if accs else None,
        "final_test_acc": float(accs[-1]) if accs else None,
        "history": history,
        "epochs_done": len(history),
        "complete": len(history) >= int(cfg["epochs"]),
        "params": models.count_params(model, widths, classes),
        "model": model,
        "widths": widths,
        "classes": classes,
        "dataset": dataset.describe(),
        "seed": int(seed),
        "config": cfg,
        "key": key,
        "cached": False,
        "train_seconds": spent,
        "versions": {"torch": torch.__version__, "numpy": np.__version__,
                     "torch_threads": torch.get_num_threads()},
    }
    if result_path and result["complete"]:
        _atomic_json(result, result_path)
        if ckpt_path and os.path.isfile(ckpt_path) and not keep_checkpoint:
            os.remove(ckpt_path)
    return result


def _has_weights_only() -> bool:
    import inspect

    import torch

    try:
        return "weights_only" in inspect.signature(torch.load).parameters
    except (TypeError, ValueError):
        return False


def _atomic_torch_save(obj, path: str) -> None:
    import torch

    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _atomic_json(obj, path: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
