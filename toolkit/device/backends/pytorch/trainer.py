"""PyTorch training cell: VGG on CIFAR-shaped data with layer freezing and reduced precision.

Job fields: see toolkit.device.training.common. The sequence (data, timed loop, records, result)
is the training scenario's (toolkit.device.scenarios.training); TorchBackend builds the model
and optimizer, steps and evaluates. The timed region is exactly one optimizer step (zero grads,
forward, loss, backward, update; on CUDA followed by a synchronize) on float32 tensors prepared
before timing; the loss of every step is kept as a sample series.

Freezing (freeze.py): frozen parameters get requires_grad=False, the BatchNorms of frozen blocks
stay in eval mode (running statistics, not updated), and the frozen prefix runs under
torch.no_grad() so no autograd graph is built for it.

Accuracy (settings "epochs" > 0) is measured with every BN on running statistics; by default
(settings "bn_eval": "precise") the trainable BNs' statistics are first recomputed over training
batches ("precise BN", settings "bn_batches"), exactly as the ONNX Runtime cell must do, so the
two frameworks' accuracies are comparable; "bn_eval": "running" keeps PyTorch's momentum
averages.

Precision:
- fp32: plain.
- bf16: torch.autocast(dtype=bfloat16), no loss scaling; on CUDA only where
  torch.cuda.is_bf16_supported(); on a CPU only where it multiplies bf16 natively
  (avx512_bf16, AMX, Arm bf16). Elsewhere (AVX2-only x86, Cortex-A72) torch's autocast would
  run a conversion-heavy emulation, ~20x slower than fp32: "not run", with the reason.
- fp16: CUDA only, autocast(float16) + GradScaler. On the CPU the cell is "not run": CPU
  autocast's fp16 path and GradScaler are late additions (torch >= 2.3/2.4, absent from the
  Jetson images' torch 1.10) and no CPU in the matrix has fp16 matmul units, so it would measure
  an emulation that nobody deploys; bf16 is the CPU's reduced precision.
"""
import sys
import time

from toolkit.device.measure.cpu_peak import native_bf16, read_cpuinfo
from toolkit.device.measure.gpu_memory import MemoryProbe
from toolkit.device.results import NotRun
from toolkit.device.scenarios import training as scenario
from toolkit.device.training import common
from toolkit.device.training.flops import training_flops
from toolkit.device.training.freeze import freeze_spec


def check_device_precision(torch, device, precision):
    # type: (Any, str, str) -> None
    """Raise NotRun when this torch/host cannot train at (device, precision)."""
    if device not in ("cpu", "cuda"):
        raise NotRun("unknown device {!r} (cpu or cuda)".format(device))
    if precision not in ("fp32", "fp16", "bf16"):
        raise NotRun("unknown precision {!r} (fp32, fp16 or bf16)".format(precision))
    if device == "cuda" and not torch.cuda.is_available():
        raise NotRun("CUDA is not available here (torch {}, built for CUDA {}, no visible "
                     "device)".format(torch.__version__, torch.version.cuda))
    if precision == "fp16" and device == "cpu":
        raise NotRun("fp16 training runs on CUDA only: CPU fp16 autocast would be an emulation "
                     "without fp16 matmul units (use bf16 on the CPU)")
    if precision == "bf16":
        if device == "cuda" and not torch.cuda.is_bf16_supported():
            raise NotRun("bf16 is not supported by this GPU ({})".format(
                torch.cuda.get_device_name()))
        if device == "cpu" and not native_bf16(read_cpuinfo()):
            raise NotRun("this CPU has no native bf16 (no avx512_bf16, amx_bf16 or Arm bf16 "
                         "flag): bf16 would run as an emulation, ~20x slower than fp32, which "
                         "no bf16 deployment measures")
        if not hasattr(torch, "autocast"):
            raise NotRun("torch {} has no torch.autocast (bf16 needs torch >= 1.10)".format(
                torch.__version__))


def set_train_mode(net, spec):
    # type: (Any, Dict[str, Any]) -> None
    """Train mode, except the BatchNorms of frozen blocks (eval: running statistics)."""
    net.train()
    modules = dict(net.named_modules())
    for name in spec["eval_modules"]:
        modules[name].eval()


def apply_freeze(net, spec):
    # type: (Any, Dict[str, Any]) -> List[Any]
    """requires_grad=False on frozen parameters; returns the trainable parameters in order."""
    frozen = set(spec["frozen"])
    params = dict(net.named_parameters())
    missing = (frozen | set(spec["trainable"])) ^ set(params)
    if missing:
        raise ValueError("freeze spec does not match the model: {}".format(sorted(missing)))
    for name, p in params.items():
        p.requires_grad_(name not in frozen)
    return [params[name] for name in spec["trainable"]]


def make_optimizer(torch, params, opt):
    # type: (Any, List[Any], Dict[str, Any]) -> Any
    if opt["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=opt["lr"], momentum=opt["momentum"],
                               weight_decay=opt["weight_decay"])
    return torch.optim.AdamW(params, lr=opt["lr"], betas=tuple(opt["betas"]), eps=opt["eps"],
                             weight_decay=opt["weight_decay"])


class TorchTrainer(object):
    """One model + optimizer + precision policy; `step(x, y)` is one optimizer step.

    x, y may be numpy arrays (copied to the device) or tensors already there (the timed path).
    """

    def __init__(self, net, spec, opt, device="cpu", precision="fp32", channels_last=False):
        import torch

        self.torch = torch
        self.spec = spec
        self.device = torch.device(device)
        self.precision = precision
        self.channels_last = bool(channels_last)
        self.net = net.to(self.device)
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.params = apply_freeze(self.net, spec)
        set_train_mode(self.net, spec)
        self.optimizer = make_optimizer(torch, self.params, opt)
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.prefix = self.net.features[:spec["split"]]
        self.suffix = self.net.features[spec["split"]:]
        self.dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
        self.scaler = None
        if precision == "fp16":
            amp = getattr(torch, "amp", None)
            if amp is not None and hasattr(amp, "GradScaler"):
                self.scaler = amp.GradScaler("cuda")
            else:  # torch < 2.3
                self.scaler = torch.cuda.amp.GradScaler()
        self.cuda = self.device.type == "cuda"

    def to_device(self, x, y):
        # type: (Any, Any) -> Tuple[Any, Any]
        torch = self.torch
        x = torch.as_tensor(x).to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, torch.as_tensor(y).to(self.device, non_blocking=True)

    def autocast(self):
        if self.dtype is None:
            return _Null()
        return self.torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def logits(self, x):
        torch = self.torch
        if self.spec["split"]:
            with torch.no_grad():  # frozen prefix: a fixed function, no graph
                x = self.prefix(x)
        return self.net.classifier(torch.flatten(self.suffix(x), 1))

    def step(self, x, y):
        """One optimizer step; returns the loss as a detached 0-d tensor."""
        if not self.torch.is_tensor(x):
            x, y = self.to_device(x, y)
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            loss = self.loss_fn(self.logits(x), y)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        if self.cuda:
            self.torch.cuda.synchronize()
        return loss.detach()

    def recompute_bn(self, batches):
        # type: (Iterable[Tuple[Any, Any]]) -> None
        """"Precise BN", as the ONNX Runtime cell does: replace the running statistics of every
        trainable BN by the cumulative average of batch statistics over `batches` under the
        current weights (frozen BNs keep theirs)."""
        torch = self.torch
        frozen = set(self.spec["eval_modules"])
        bns = [m for name, m in self.net.named_modules()
               if isinstance(m, torch.nn.BatchNorm2d) and name not in frozen]
        saved = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average
        try:
            with torch.no_grad(), self.autocast():
                for x, y in batches:
                    self.net(self.to_device(x, y)[0])
        finally:
            for m, momentum in zip(bns, saved):  # noqa: B905 - Python 3.6 has no strict=
                m.momentum = momentum

    def evaluate(self, batches):
        # type: (Iterable[Tuple[Any, Any]]) -> float
        """Top-1 accuracy with every BatchNorm on running statistics; restores train mode."""
        torch = self.torch
        self.net.eval()
        correct = total = 0
        try:
            with torch.no_grad(), self.autocast():
                for x, y in batches:
                    x, y = self.to_device(x, y)
                    pred = self.net(x).argmax(1)
                    correct += int((pred == y).sum())
                    total += int(y.numel())
        finally:
            set_train_mode(self.net, self.spec)
        return correct / float(max(total, 1))


class _Null(object):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class TorchBackend(scenario.TrainingBackend):
    """PyTorch's side of the training scenario (toolkit.device.scenarios.training)."""

    name = "pytorch"

    def __init__(self):
        import torch

        self.torch = torch
        self.trainer = None  # type: Optional[TorchTrainer]
        self.probe = None  # type: Optional[MemoryProbe]

    def check(self, job):
        # type: (Dict[str, Any]) -> None
        coords = job["coords"]
        check_device_precision(self.torch, coords.get("device", "cpu"),
                               coords.get("precision", "fp32"))

    def setup(self, job, dataset):
        # type: (Dict[str, Any], Any) -> Dict[str, Any]
        import numpy as np

        from toolkit.device.models import build_model

        torch, coords, settings = self.torch, job["coords"], job["settings"]
        device, precision = coords.get("device", "cpu"), coords.get("precision", "fp32")
        freeze = int(coords.get("freeze", 0))
        if settings.get("threads"):
            torch.set_num_threads(int(settings["threads"]))
        seed = int(settings.get("seed", 0))
        torch.manual_seed(seed)
        np.random.seed(seed)
        if settings.get("deterministic"):
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
        elif device == "cuda":
            torch.backends.cudnn.benchmark = True
        model, widths = common.model_widths(settings)
        classes = int(settings.get("classes", dataset.classes))
        self.spec = spec = freeze_spec(model, freeze)
        self.opt = common.opt_settings(settings)
        if device == "cuda" and hasattr(torch.cuda, "mem_get_info"):  # torch >= 1.10
            torch.cuda.reset_peak_memory_stats()
            torch.cuda.init()  # the context exists before the baseline: it is not the model's
            integrated = bool(getattr(torch.cuda.get_device_properties(0), "is_integrated",
                                      False))
            self.probe = MemoryProbe(torch.cuda, integrated)
        started = time.perf_counter()
        self.trainer = TorchTrainer(build_model(model, widths, classes, seed), spec, self.opt,
                                    device, precision, settings.get("channels_last", False))
        self.setup_seconds = time.perf_counter() - started
        if self.probe is not None:
            self.probe.mark("model")
        self.settings, self.widths, self.classes, self.seed = settings, widths, classes, seed
        return training_flops(model, widths, freeze, classes)

    def prepare(self, x, y):
        return self.trainer.to_device(x, y)

    def step(self, x, y):
        return self.trainer.step(x, y)

    def measurements(self, samples):
        # type: (List[float]) -> Tuple[List[Tuple[str, float, str]], Dict[str, Any]]
        torch = self.torch
        records = [("setup", self.setup_seconds, "s")]
        if self.probe is not None:
            torch.cuda.synchronize()
            self.probe.mark("after_steps")  # the caching allocator keeps its peak reserved
            records += [("gpu_max_allocated", float(torch.cuda.max_memory_allocated()), "B"),
                        ("gpu_max_reserved", float(torch.cuda.max_memory_reserved()), "B")]
            records += self.probe.records()
        return records, {}

    def evaluate(self, dataset):
        # type: (Any) -> Dict[str, float]
        eval_batch = int(self.settings.get("eval_batch", 256))
        if self.settings.get("bn_eval", "precise") == "precise":
            self.trainer.recompute_bn(common.stat_batches(dataset, eval_batch, self.settings,
                                                          self.seed))
        return {"accuracy": self.trainer.evaluate(common.eval_batches(dataset, eval_batch))}

    def describe(self):
        # type: () -> Dict[str, Dict[str, Any]]
        import numpy as np

        torch, trainer, settings = self.torch, self.trainer, self.settings
        epochs = int(settings.get("epochs", 0))
        return {
            "settings": dict(self.opt, threads=torch.get_num_threads(),
                             freeze_split=self.spec["split"],
                             trainable_params=self.spec["trainable"],
                             channels_last=trainer.channels_last,
                             autocast=str(trainer.dtype) if trainer.dtype else None,
                             grad_scaler=trainer.scaler is not None, widths=self.widths,
                             classes=self.classes,
                             cudnn_benchmark=bool(torch.backends.cudnn.benchmark),
                             bn_eval=settings.get("bn_eval", "precise") if epochs > 0 else None,
                             mkldnn=bool(torch.backends.mkldnn.is_available())),
            "versions": {"torch": torch.__version__, "numpy": np.__version__,
                         "cuda": torch.version.cuda or "", "python_impl": sys.implementation.name},
        }


def run(job):
    # type: (Dict[str, Any]) -> Dict[str, Any]
    """The "training" job for framework "pytorch" (job fields: toolkit.device.training.common)."""
    return scenario.run(job, TorchBackend())
