"""ONNX Runtime Training cell: train from pre-generated artifacts, without importing torch.

Two jobs (the split keeps PyTorch, ~500 MB of RSS, out of the measured process):
1. kind "ort_training_artifacts", framework "pytorch" (artifacts.py beside this module):
   export + generate_artifacts into `<cache_dir>/<artifact_key>/`, reused when present.
2. kind "training", framework "onnxruntime-training" (this module, `run`): onnxruntime + numpy
   only. It finds the artifacts from the same job fields (artifacts "cache_dir", or
   "ort_training_dir" pointing at the directory directly) and is "not run" when they are absent.
   The sequence (data, timed loop, records, result) is the training scenario's
   (toolkit.device.scenarios.training); OrtBackend opens the session, steps and evaluates.

The timed region is one optimizer step: `module(x, y)` (forward + backward), `optimizer.step()`,
`module.lazy_reset_grad()`. Other job fields: see toolkit.device.training.common; ORT-specific
settings: "cpu_mem_arena" (default True), "bn_batches" (batches of "eval_batch" train images
for recomputing BN statistics before evaluation, default 8).

What this framework can and cannot do (recorded, not hidden):
- Its SGD has no momentum and no weight decay: an "sgd" cell runs plain SGD with the job's lr and
  records momentum 0 and weight_decay 0 as the effective settings (plus the requested ones).
- AdamW's weight decay defaults to 0 in generate_artifacts; the artifact job passes the job's
  betas, eps and weight_decay explicitly (onnxblock.optim.AdamW).
- fp16: not run: the checkpoint loader rejects FP16 parameters and FP16 training segfaults on
  the CPU provider (onnxruntime-training 1.19); bf16: not run, no bf16 training kernels.
- cuda: needs the CUDA build (onnxruntime-training, x86 + CUDA 11.8); not run where the CUDA
  execution provider is absent.
- BatchNorm: ORT trains every BN in batch-statistics mode and never updates running statistics
  (upstream issue 19370), and the generated eval model does not load; see ort_artifacts for how
  frozen BNs are exported and how accuracy is measured (infer.onnx fed the trained parameters +
  "precise BN" statistics recomputed with bnstats.onnx).

Importing onnxruntime.training normally imports torch (its package __init__ pulls in ORTModule
and optimizers written in torch, and onnxruntime's import-time validation imports ORTModule):
import_training_api() loads only onnxruntime.training.api (about 40 MB instead of 570 MB).
"""
import hashlib
import importlib
import importlib.util
import json
import os
import sys
import time
import types

from toolkit.device.results import NotRun
from toolkit.device.scenarios import training as scenario
from toolkit.device.training import common
from toolkit.device.training.flops import training_flops
from toolkit.device.training.freeze import freeze_spec

FORMAT_VERSION = 2  # bump whenever the artifacts' content or layout changes
ARTIFACT_FILES = {"training": "training_model.onnx", "optimizer": "optimizer_model.onnx",
                  "checkpoint": "checkpoint", "infer": "infer.onnx", "bnstats": "bnstats.onnx",
                  "manifest": "manifest.json"}
_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def key_fields(job):
    # type: (Dict[str, Any]) -> Dict[str, Any]
    """Everything the artifacts depend on (the cache key); both jobs compute it the same way."""
    settings = job["settings"]
    model, widths = common.model_widths(settings)
    opt = common.opt_settings(settings)
    fields = {"format": FORMAT_VERSION, "model": model, "widths": widths,
              "classes": int(settings.get("classes", 10)), "seed": int(settings.get("seed", 0)),
              "freeze": int(job["coords"].get("freeze", 0)), "optimizer": opt["optimizer"],
              "opset": int(settings.get("opset", 17))}
    if opt["optimizer"] == "adamw":
        fields.update(betas=opt["betas"], eps=opt["eps"], weight_decay=opt["weight_decay"])
    return fields


def artifact_key(fields):
    # type: (Dict[str, Any]) -> str
    blob = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return "ort-training-{}-{}".format(fields["model"], hashlib.sha256(blob).hexdigest()[:16])


def artifact_dir(job):
    # type: (Dict[str, Any]) -> str
    artifacts = job.get("artifacts", {})
    if artifacts.get("ort_training_dir"):
        return artifacts["ort_training_dir"]
    if not artifacts.get("cache_dir"):
        raise NotRun("no ORT training artifacts: the job gives neither artifacts.cache_dir nor "
                     "artifacts.ort_training_dir")
    return os.path.join(artifacts["cache_dir"], artifact_key(key_fields(job)))


def import_training_api():
    # type: () -> Tuple[Any, Any]
    """(onnxruntime, onnxruntime.training.api) without torch (see the module docstring)."""
    if "onnxruntime.training.api" in sys.modules:  # already loaded (e.g. torch-side tests)
        return sys.modules["onnxruntime"], sys.modules["onnxruntime.training.api"]
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("onnxruntime is not installed")
    training_path = os.path.join(list(spec.submodule_search_locations)[0], "training")
    if not os.path.isdir(os.path.join(training_path, "api")):
        raise NotRun("this onnxruntime has no training API (install onnxruntime-training)")
    if "onnxruntime.training" not in sys.modules:
        package = types.ModuleType("onnxruntime.training")
        package.__path__ = [training_path]  # type: ignore
        sys.modules["onnxruntime.training"] = package
        sys.modules.setdefault("onnxruntime.training.ortmodule", None)  # type: ignore
    import onnxruntime
    from onnxruntime.training import api

    return onnxruntime, api


class OrtTrainer(object):
    """CheckpointState + Module + Optimizer from an artifact directory; `step(x, y)` is one step.

    Only the training session is created (no eval model, see the module docstring)."""

    def __init__(self, directory, device="cpu", lr=0.01, threads=None, cpu_mem_arena=True):
        ort, api = import_training_api()
        # The optimizer graph always draws a benign shape-merge warning; errors still show.
        ort.set_default_logger_severity(3)
        self.ort, self.directory = ort, directory
        with open(os.path.join(directory, ARTIFACT_FILES["manifest"])) as handle:
            self.manifest = json.load(handle)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        options.enable_cpu_mem_arena = bool(cpu_mem_arena)
        self.options = options
        self.device = device
        self.state = api.CheckpointState.load_checkpoint(
            os.path.join(directory, ARTIFACT_FILES["checkpoint"]))
        self.module = api.Module(os.path.join(directory, ARTIFACT_FILES["training"]), self.state,
                                 None, device=device, session_options=options)
        self.optimizer = api.Optimizer(os.path.join(directory, ARTIFACT_FILES["optimizer"]),
                                       self.module)
        self.optimizer.set_learning_rate(float(lr))
        self.module.train()

    def step(self, x, y):
        """One optimizer step; returns the loss (a numpy scalar)."""
        loss = self.module(x, y)
        self.optimizer.step()
        self.module.lazy_reset_grad()
        return loss

    def parameters(self, names=None):
        # type: (Optional[List[str]]) -> Dict[str, Any]
        """Current parameter values by name (numpy copies)."""
        if names is None:  # iterating a Parameters mapping yields (name, Parameter) pairs
            names = [item[0] if isinstance(item, tuple) else item
                     for item in self.state.parameters]
        return {name: self.state.parameters[name].data.copy() for name in names}

    def _session(self, name):
        path = os.path.join(self.directory, ARTIFACT_FILES[name])
        return self.ort.InferenceSession(path, self.options,
                                         providers=[_PROVIDERS.get(self.device, self.device)])

    def bn_statistics(self, batches):
        # type: (Iterable[Tuple[Any, Any]]) -> Dict[str, Any]
        """Population mean and variance of every trainable BN's input under the current weights
        ("precise BN"), as {"features.<i>.running_mean": ..., "...running_var": ...}."""
        import numpy as np

        outputs = self.manifest["stats_outputs"]
        if not outputs:
            return {}
        session = self._session("bnstats")
        inputs = _input_names(session)
        trained = self.parameters([n for n in self.manifest["trainable"]
                                   if n.startswith("features.")])
        last_bn = outputs[-1].split(":", 1)[1] + "."  # its affine output is unused: pruned
        _check_inputs("bnstats", {k: v for k, v in trained.items()
                                  if not k.startswith(last_bn)}, inputs)
        feed = {k: v for k, v in trained.items() if k in inputs}
        sums = [0.0] * len(outputs)
        count = 0
        for x, _ in batches:
            feed["input"] = x
            values = session.run(outputs, feed)
            n = len(x)
            for i, value in enumerate(values):  # outputs come in (mean, var) pairs
                # Accumulate E[x] and E[x^2] per channel, weighted by batch size.
                sums[i] = sums[i] + n * (value if i % 2 == 0 else value + values[i - 1] ** 2)
            count += n
        stats = {}
        for i in range(0, len(outputs), 2):
            module = outputs[i].split(":", 1)[1]
            mean = sums[i] / count
            stats[module + ".running_mean"] = mean.astype(np.float32)
            stats[module + ".running_var"] = np.maximum(sums[i + 1] / count - mean ** 2,
                                                        0.0).astype(np.float32)
        return stats

    def infer(self, stats):
        # type: (Dict[str, Any]) -> Callable[[Any], Any]
        """x -> logits of infer.onnx with the current parameters and the given BN statistics."""
        session = self._session("infer")
        inputs = _input_names(session)
        trained = self.parameters(self.manifest["trainable"])
        _check_inputs("infer", dict(trained, **stats), inputs)
        feed = dict(trained, **stats)

        def logits(x):
            feed["input"] = x
            return session.run(None, feed)[0]

        return logits

    def evaluate(self, test_batches, stat_batches):
        # type: (Iterable[Tuple[Any, Any]], Iterable[Tuple[Any, Any]]) -> float
        """Top-1 accuracy of infer.onnx fed the trained parameters and recomputed BN stats."""
        import numpy as np

        logits = self.infer(self.bn_statistics(stat_batches))
        correct = total = 0
        for x, y in test_batches:
            correct += int((np.argmax(logits(x), axis=1) == y).sum())
            total += len(y)
        return correct / float(max(total, 1))


def _input_names(session):
    # type: (Any) -> Set[str]
    """Graph inputs, including initializers that are also inputs (fed values override them)."""
    names = {i.name for i in session.get_inputs()}
    return names | {i.name for i in session.get_overridable_initializers()}


def _check_inputs(model, values, inputs):
    # type: (str, Dict[str, Any], Set[str]) -> None
    """A value that is not an input would silently leave the initial one in place: refuse."""
    missing = sorted(set(values) - set(inputs))
    if missing:
        raise ValueError("{}.onnx has no inputs {} (stale artifacts?)".format(model, missing[:4]))


def check_device_precision(ort, device, precision):
    # type: (Any, str, str) -> None
    if precision == "fp16":
        raise NotRun("fp16 training with onnxruntime-training: the checkpoint loader rejects "
                     "FP16 parameters and FP16 training segfaults on the CPU provider (only CUDA "
                     "with casts inside the graph is plausible; not built)")
    if precision != "fp32":
        raise NotRun("onnxruntime-training has no {} training kernels here; fp32 only".format(
            precision))
    provider = _PROVIDERS.get(device)
    available = ort.get_available_providers()
    if provider not in available:
        raise NotRun("no {} in onnxruntime {} (available: {}){}".format(
            provider or device, ort.__version__, ", ".join(available),
            "; CUDA training needs the onnxruntime-training CUDA build and a GPU"
            if device == "cuda" else ""))


class OrtBackend(scenario.TrainingBackend):
    """ONNX Runtime Training's side of the training scenario (toolkit.device.scenarios.training):
    onnxruntime + numpy only."""

    name = "onnxruntime-training"

    def __init__(self):
        try:
            self.ort, _ = import_training_api()
        except ImportError as error:
            raise NotRun("onnxruntime-training is not installed here ({})".format(
                error)) from None
        self.trainer = None  # type: Optional[OrtTrainer]

    def check(self, job):
        # type: (Dict[str, Any]) -> None
        coords = job["coords"]
        self.device = coords.get("device", "cpu")
        check_device_precision(self.ort, self.device, coords.get("precision", "fp32"))
        self.directory = artifact_dir(job)
        if not os.path.isfile(os.path.join(self.directory, ARTIFACT_FILES["manifest"])):
            raise NotRun("ORT training artifacts missing in {}: run the ort_training_artifacts "
                         "job (framework pytorch) first".format(self.directory))

    def setup(self, job, dataset):
        # type: (Dict[str, Any], Any) -> Dict[str, Any]
        settings = job["settings"]
        self.seed = int(settings.get("seed", 0))
        self.ort.set_seed(self.seed)
        self.fields = fields = key_fields(job)
        if dataset.classes != fields["classes"]:
            raise ValueError("data set {} has {} classes, the artifacts {} (settings.classes)"
                             .format(dataset.name, dataset.classes, fields["classes"]))
        freeze = int(job["coords"].get("freeze", 0))
        self.spec = freeze_spec(fields["model"], freeze)
        self.opt = common.opt_settings(settings)
        self.settings = settings
        started = time.perf_counter()
        self.trainer = OrtTrainer(self.directory, self.device, self.opt["lr"],
                                  settings.get("threads"), settings.get("cpu_mem_arena", True))
        self.setup_seconds = time.perf_counter() - started
        return training_flops(fields["model"], fields["widths"], freeze, fields["classes"])

    def step(self, x, y):
        return self.trainer.step(x, y)

    def measurements(self, samples):
        # type: (List[float]) -> Tuple[List[Tuple[str, float, str]], Dict[str, Any]]
        return [("setup", self.setup_seconds, "s")], {}

    def evaluate(self, dataset):
        # type: (Any) -> Dict[str, float]
        eval_batch = int(self.settings.get("eval_batch", 256))
        return {"accuracy": self.trainer.evaluate(
            common.eval_batches(dataset, eval_batch),
            common.stat_batches(dataset, eval_batch, self.settings, self.seed))}

    def describe(self):
        # type: () -> Dict[str, Dict[str, Any]]
        import numpy as np

        opt, options = self.opt, self.trainer.options
        effective = dict(opt)
        if opt["optimizer"] == "sgd":
            effective.update(momentum=0.0, weight_decay=0.0)
        return {
            "settings": dict(effective, requested=opt, artifact_dir=self.directory,
                             providers=[_PROVIDERS[self.device]],
                             intra_op_num_threads=options.intra_op_num_threads,
                             enable_cpu_mem_arena=options.enable_cpu_mem_arena,
                             trainable_params=self.spec["trainable"],
                             widths=self.fields["widths"], classes=self.fields["classes"],
                             bn_eval="precise BN via bnstats.onnx + infer.onnx",
                             torch_loaded="torch" in sys.modules),
            "versions": {"onnxruntime": self.ort.__version__, "numpy": np.__version__,
                         "onnx_artifacts": self.trainer.manifest.get("versions", {})},
        }


def run(job):
    # type: (Dict[str, Any]) -> Dict[str, Any]
    """The "training" job for framework "onnxruntime-training"."""
    return scenario.run(job, OrtBackend())
