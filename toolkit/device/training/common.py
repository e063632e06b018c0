"""What every training cell shares (stdlib + numpy only): the scenario (scenario.py) and the
PyTorch, ONNX Runtime Training and TensorRT backends.

Job fields every training cell reads (the ORT cell also reads its artifacts, see ort_trainer):

- coords: "framework", "device" ("cpu" | "cuda"), "precision" ("fp32" | "fp16" | "bf16"),
  "freeze" (int, conv blocks frozen, see freeze.py), "batch" (int).
- settings: "model" ("vgg16"; VGG-11 works too), "widths" (list, default the full widths),
  "classes" (default: the data set's), "seed" (int), "optimizer" ("sgd" | "adamw"), "lr",
  "momentum", "weight_decay", "betas" ([b1, b2], AdamW), "eps" (AdamW), "threads" (int, CPU
  threads; default: leave the framework's choice), "train_size" (images per epoch for the epoch
  estimate; default: the data set's train split), "epochs" (0 = timing only on `distinct_batches`
  pre-normalised batches cycled; > 0 = train that many epochs over the train split, every step
  timed, then accuracy on the test split), "distinct_batches" (default 4), "augment" (bool,
  random crop + flip per step, epochs > 0 only; default False), "eval_batch" (default 256),
  "data" ({"name": "synthetic" | "digits" | "cifar10" | "cifar100", "root": dir, other keyword
  arguments of data.load_dataset}; default a synthetic set), "max_steps" (optional cap on the
  steps of an epochs > 0 run: smoke profiles), "bn_eval" ("precise" | "running", PyTorch only;
  see torch_trainer) and "bn_batches" (default 8) for the BN statistics before evaluation.
- artifacts: "data_dir" (optional, CIFAR directory; overrides settings.data.root).
- protocol: the sampling protocol (warm-up count/seconds, min count/seconds, max seconds, max CV).
"""
import math
import os
import time

from toolkit.device.measure.sampling import sample
from toolkit.device.measure.stats import summarize
from toolkit.device.results import latency_records

DEFAULT_DATA = {"name": "synthetic", "n_train": 1024, "n_test": 256}


def progress(message):
    # type: (str) -> None
    """One compact line on stderr (the device side has no rich)."""
    import sys

    sys.stderr.write("[train {:.1f}] {}\n".format(time.time() % 1e4, message))
    sys.stderr.flush()


def model_widths(settings):
    # type: (Dict[str, Any]) -> Tuple[str, List[int]]
    from toolkit.device.models import full_widths

    model = settings.get("model", "vgg16")
    widths = settings.get("widths") or full_widths(model)
    return model, [int(w) for w in widths]


def load_data(job):
    # type: (Dict[str, Any]) -> Any
    """The data set of the job as a toolkit.device.data.DataSet (uint8 NCHW, int64 labels)."""
    from toolkit.device import data

    prepared = job.get("artifacts", {}).get("dataset_file")
    if prepared and os.path.isfile(prepared):  # written on the host by prepare.export_dataset
        return data.load_npz(prepared)
    spec = dict(job["settings"].get("data") or DEFAULT_DATA)
    name = spec.pop("name")
    root = job.get("artifacts", {}).get("data_dir") or spec.pop("root", None)
    spec.pop("root", None)
    seed = int(spec.pop("seed", job["settings"].get("seed", 0)))
    if name == "synthetic" and "classes" not in spec and "classes" in job["settings"]:
        spec["classes"] = int(job["settings"]["classes"])
    return data.load_dataset(name, root=root, seed=seed, **spec)


def fixed_batches(dataset, batch, count, seed):
    # type: (Any, int, int, int) -> List[Tuple[Any, Any]]
    """`count` pre-normalised float32 batches from the train split (wrapping if it is small)."""
    import numpy as np

    from toolkit.device import data

    rng = np.random.Generator(np.random.PCG64(int(seed)))
    n = len(dataset.y_train)
    out = []
    for _ in range(int(count)):
        idx = rng.integers(0, n, size=int(batch))
        out.append((data.normalize(dataset.x_train[idx], dataset.mean, dataset.std),
                    dataset.y_train[idx].astype(np.int64)))
    return out


def epoch_batches(dataset, batch, epochs, seed, augment=False):
    # type: (Any, int, int, int, bool) -> Iterator[Tuple[Any, Any]]
    """Shuffled (and optionally augmented) normalised batches over `epochs` epochs, drop_last so
    every step has the same shape (ORT and TensorRT graphs may be built for a fixed batch)."""
    import numpy as np

    from toolkit.device import data

    rng = np.random.Generator(np.random.PCG64(int(seed)))
    for _ in range(int(epochs)):
        for idx in data.batch_indices(len(dataset.y_train), int(batch), rng, drop_last=True):
            x = dataset.x_train[idx]
            if augment:
                x = data.augment(x, rng)
            yield data.normalize(x, dataset.mean, dataset.std), dataset.y_train[idx]


def stat_batches(dataset, batch, settings, seed):
    # type: (Any, int, Dict[str, Any], int) -> List[Tuple[Any, Any]]
    """Training batches (not augmented) for recomputing BN statistics: settings "bn_batches"
    (default 8) batches of `batch` images, at most the train split."""
    n = min(len(dataset.y_train), int(batch) * int(settings.get("bn_batches", 8)))
    return fixed_batches(dataset, int(batch), max(1, n // int(batch)), seed + 1)


def eval_batches(dataset, batch):
    # type: (Any, int) -> Iterator[Tuple[Any, Any]]
    from toolkit.device import data

    n = len(dataset.y_test)
    for start in range(0, n, int(batch)):
        yield (data.normalize(dataset.x_test[start:start + batch], dataset.mean, dataset.std),
               dataset.y_test[start:start + batch])


def timed_loop(step, batches, protocol, max_steps=None, clock=time.perf_counter):
    # type: (Callable[[Any, Any], Any], Iterable[Tuple[Any, Any]], Any, Optional[int], Any) -> Dict[str, Any]
    """Run `step(x, y)` over every batch (a training run), timing each call alone; the first
    protocol.warmup_count steps are warm-up. Returns samples, warm-up accounting and the step
    outputs (losses). max_steps None or 0 (the spec default) means no cap."""
    max_steps = max_steps or None
    times, outputs = [], []
    started = clock()
    for x, y in batches:
        t0 = clock()
        outputs.append(step(x, y))
        times.append(clock() - t0)
        if max_steps is not None and len(times) >= max_steps:
            break
    warm = min(protocol.warmup_count, max(0, len(times) - 1))
    return {"samples": times[warm:], "warmup_count": warm,
            "warmup_seconds": math.fsum(times[:warm]), "measure_seconds": clock() - started,
            "outputs": outputs}


def timed_training(step, dataset, batch, epochs, seed, settings, protocol,
                   prepare=lambda x, y: (x, y)):
    # type: (Callable[[Any, Any], Any], Any, int, int, int, Dict[str, Any], Any, Callable[[Any, Any], Tuple[Any, Any]]) -> Tuple[List[float], float, List[float], Dict[str, Any]]
    """The timed part of every training cell: (every step's loss, first-step seconds, step-time
    samples, warm-up accounting). `prepare(x, y)` moves a numpy batch to the framework (outside
    the timed region for cycled batches).

    epochs == 0: distinct prepared batches cycled under the sampling protocol; epochs > 0: every
    batch of every epoch, each step timed, the protocol's warm-up steps dropped.
    """
    if epochs == 0:
        batches = [prepare(x, y) for x, y in fixed_batches(
            dataset, batch, int(settings.get("distinct_batches", 4)), seed)]
        started = time.perf_counter()
        losses = [step(*batches[0])]
        first_step = time.perf_counter() - started
        position = [1]

        def one_step():
            x, y = batches[position[0] % len(batches)]
            position[0] += 1
            losses.append(step(x, y))

        timing = sample(one_step, protocol)
    else:
        stream = (prepare(x, y) for x, y in epoch_batches(
            dataset, batch, epochs, seed, bool(settings.get("augment", False))))
        first = next(stream)
        started = time.perf_counter()
        losses = [step(*first)]
        first_step = time.perf_counter() - started
        timing = timed_loop(step, stream, protocol, settings.get("max_steps"))
        losses += timing.pop("outputs")
    samples = timing.pop("samples")
    return [float(v) for v in losses], first_step, samples, timing


def step_records(samples, batch, protocol, flops, train_size):
    # type: (List[float], int, Any, Dict[str, Any], int) -> Tuple[List[Tuple[str, float, str]], Optional[str]]
    """Step-time summary (step_time_*), images/s, epoch estimate, FLOPs and achieved FLOP/s."""
    latency, invalid = latency_records(samples, batch, protocol)
    records = [(name.replace("latency_", "step_time_"), value, unit)
               for name, value, unit in latency]
    p50 = summarize(samples)["p50"]
    steps_per_epoch = int(math.ceil(float(train_size) / batch))
    per_step = float(flops["train"]) * batch
    records += [
        ("epoch_time_estimate", steps_per_epoch * p50, "s"),
        ("steps_per_epoch", float(steps_per_epoch), "count"),
        ("train_flops_per_image", float(flops["train"]), "FLOP"),
        ("forward_flops_per_image", float(flops["forward"]), "FLOP"),
        ("train_flops_ratio", float(flops["train_ratio"]), "ratio"),
        ("train_flops_per_step", per_step, "FLOP"),
        ("achieved_flops", per_step / p50 if p50 > 0 else 0.0, "FLOP/s"),
    ]
    return records, invalid


def loss_records(losses):
    # type: (List[float]) -> List[Tuple[str, float, str]]
    import numpy as np

    values = np.asarray(losses, dtype=np.float64)
    if values.size == 0:
        return []
    tail = values[-max(1, values.size // 10):]
    return [("loss_first", float(values[0]), "nat"), ("loss_last", float(values[-1]), "nat"),
            ("loss_tail_mean", float(tail.mean()), "nat"),
            ("loss_finite", float(np.isfinite(values).all()), "ratio")]


def loss_outcome(losses, invalid):
    # type: (List[float], Optional[str]) -> Tuple[List[Tuple[str, float, str]], Optional[str]]
    """Loss records and the step count, and the verdict: a non-finite loss makes an otherwise
    valid cell INVALID (every trainer ends this way)."""
    records = loss_records(losses) + [("steps", float(len(losses)), "count")]
    if not invalid and not all(math.isfinite(v) for v in losses):
        invalid = "non-finite loss"
    return records, invalid


def opt_settings(settings):
    # type: (Dict[str, Any]) -> Dict[str, Any]
    """The optimizer hyper-parameters with their defaults, as recorded."""
    name = str(settings.get("optimizer", "sgd")).lower()
    if name not in ("sgd", "adamw"):
        from toolkit.errors import UserError

        raise UserError("optimizer must be sgd or adamw, got {!r}".format(name))
    out = {"optimizer": name, "lr": float(settings.get("lr", 0.01 if name == "sgd" else 1e-3)),
           "weight_decay": float(settings.get("weight_decay", 5e-4 if name == "sgd" else 1e-2))}
    if name == "sgd":
        out["momentum"] = float(settings.get("momentum", 0.9))
    else:
        betas = settings.get("betas", (0.9, 0.999))
        out["betas"] = [float(betas[0]), float(betas[1])]
        out["eps"] = float(settings.get("eps", 1e-8))
    return out
