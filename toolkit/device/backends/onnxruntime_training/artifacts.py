"""ONNX Runtime Training artifacts (the preparation job; needs torch, onnx, onnxruntime-training).

Job: kind "ort_training_artifacts", framework "pytorch". Fields: coords "freeze"; settings
"model", "widths", "classes" (default 10), "seed", "optimizer" ("sgd" | "adamw") with "betas",
"eps", "weight_decay" for AdamW (baked into the optimizer graph), "opset" (default 17);
artifacts "cache_dir" (required: the directory is created; one sub-directory per content key).
Writes `<cache_dir>/<artifact_key(...)>/` atomically (built under a temporary name, renamed), or
reuses it when its manifest is already there (records cache_hit = 1):

- training_model.onnx, optimizer_model.onnx, checkpoint: generate_artifacts() from the export of
  the model with requires_grad / frozen_params from freeze.py (eval_model.onnx is written by
  generate_artifacts too and never loaded, see below);
- infer.onnx: the eval-mode export (BatchNorm on running statistics), initializers also graph
  inputs, so the trained parameters and recomputed BN statistics are fed at run time;
- bnstats.onnx: the train-mode forward that outputs every trainable BatchNorm's batch mean and
  (biased) variance of its input, for recomputing BN statistics after training;
- manifest.json: the key's fields, file names, the BN statistic outputs, versions.

How the export is made, and why:
- TorchScript exporter (dynamo=False), do_constant_folding=False, TrainingMode.PRESERVE with the
  module modes of freeze.py (trainable BNs train, frozen BNs eval), batch axis dynamic.
- ONNX Runtime Training replaces EVERY BatchNormalization node of a training graph by its
  training-mode kernel (batch statistics), whatever its training_mode attribute says (seen with
  1.19.2: the loss of a frozen-prefix model came out as if nothing were frozen). A frozen block's
  BN must use running statistics, so before export frozen BNs are swapped for FrozenBatchNorm: the
  same affine map written as elementwise ops ((x - mean) * weight / sqrt(var + eps) + bias) with
  the same parameter and buffer names, which no training pass rewrites. With that, PyTorch and
  ORT losses agree to ~1e-4 relative with and without freezing.
- The generated eval model is not used: with BatchNorm exported in training mode it fails to load
  (seen with onnxruntime-training 1.19), and its BN running statistics would be the initial
  ones anyway because ORT does not update them (upstream issue 19370). Accuracy is measured
  instead with infer.onnx in a plain InferenceSession fed the trained parameters and BN
  statistics recomputed over training batches with bnstats.onnx ("precise BN": population mean
  and variance of each BN input under the trained network, the later layers seeing
  batch-normalised inputs as in training).
"""
import json
import os
import shutil
import time
import warnings

import torch
from torch import nn

from toolkit.device.backends.onnxruntime_training.trainer import (
    ARTIFACT_FILES,
    artifact_key,
    key_fields,
)
from toolkit.device.training.freeze import freeze_spec


class FrozenBatchNorm(nn.Module):
    """BatchNorm2d on fixed running statistics as plain elementwise ops (same state names)."""

    def __init__(self, bn):
        super(FrozenBatchNorm, self).__init__()
        self.weight = nn.Parameter(bn.weight.detach().clone(), requires_grad=False)
        self.bias = nn.Parameter(bn.bias.detach().clone(), requires_grad=False)
        self.register_buffer("running_mean", bn.running_mean.detach().clone())
        self.register_buffer("running_var", bn.running_var.detach().clone())
        self.eps = float(bn.eps)

    def forward(self, x):
        scale = self.weight / torch.sqrt(self.running_var + self.eps)
        return (x - self.running_mean[None, :, None, None]) * scale[None, :, None, None] \
            + self.bias[None, :, None, None]


class ProbeBatchNorm(nn.Module):
    """Train-mode BatchNorm2d that also hands its input's batch mean and variance to `sink`."""

    def __init__(self, bn, sink):
        super(ProbeBatchNorm, self).__init__()
        self.weight = bn.weight
        self.bias = bn.bias
        self.eps = float(bn.eps)
        self.sink = sink

    def forward(self, x):
        mean = x.mean(dim=(0, 2, 3))
        var = ((x - mean[None, :, None, None]) ** 2).mean(dim=(0, 2, 3))
        self.sink.append((mean, var))
        norm = (x - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + self.eps)
        return norm * self.weight[None, :, None, None] + self.bias[None, :, None, None]


class _Probe(nn.Module):
    """Runs a VGG's features and returns what its ProbeBatchNorms saw. The VGG's children are
    adopted directly so parameter names (hence ONNX input names) stay "features.<i>.weight"."""

    def __init__(self, net, sink):
        super(_Probe, self).__init__()
        self.features = net.features
        self.sink = sink

    def forward(self, x):
        del self.sink[:]
        self.features(x)
        return tuple(t for pair in self.sink for t in pair)


def _swap(net, names, make):
    # type: (nn.Module, List[str], Callable[[nn.Module], nn.Module]) -> None
    """Replace the BatchNorms `names` (e.g. "features.1") of net.features by make(bn)."""
    for name in names:
        index = int(name.split(".")[1])
        net.features[index] = make(net.features[index])


def _export(module, path, output_names, opset, keep_inputs=False):
    # type: (nn.Module, str, List[str], int, bool) -> None
    import inspect

    kwargs = dict(input_names=["input"], output_names=output_names, opset_version=int(opset),
                  do_constant_folding=False, training=torch.onnx.TrainingMode.PRESERVE,
                  keep_initializers_as_inputs=keep_inputs, export_params=True,
                  dynamic_axes=dict({"input": {0: "batch"}},
                                    **{n: {0: "batch"} for n in output_names[:1]}))
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(2, 3, 32, 32),), path, **kwargs)


def _cap_ir_version(path):
    # type: (str) -> int
    import onnx

    from toolkit.device.models.export import MAX_IR_VERSION

    proto = onnx.load(path)
    if proto.ir_version > MAX_IR_VERSION:
        proto.ir_version = MAX_IR_VERSION
        onnx.save(proto, path)
    return int(proto.ir_version)


def build_artifacts(directory, fields):
    # type: (str, Dict[str, Any]) -> Dict[str, Any]
    """Write every artifact for `fields` (see ort_trainer.key_fields) into `directory`."""
    import onnx
    import onnxruntime
    from onnxruntime.training import artifacts as ort_artifacts
    from onnxruntime.training import onnxblock

    from toolkit.device.backends.pytorch.trainer import set_train_mode
    from toolkit.device.models import build_model

    onnxruntime.set_default_logger_severity(3)
    spec = freeze_spec(fields["model"], fields["freeze"])
    frozen_bns = set(spec["eval_modules"])
    opset = int(fields["opset"])

    def fresh():
        return build_model(fields["model"], fields["widths"], fields["classes"], fields["seed"])

    timings = {}
    started = time.perf_counter()
    net = fresh()
    _swap(net, sorted(frozen_bns), FrozenBatchNorm)
    set_train_mode(net, dict(spec, eval_modules=[]))
    base = os.path.join(directory, "base_model.onnx")
    _export(net, base, ["logits"], opset)
    _cap_ir_version(base)

    infer = fresh().eval()
    _export(infer, os.path.join(directory, ARTIFACT_FILES["infer"]), ["logits"], opset,
            keep_inputs=True)
    _cap_ir_version(os.path.join(directory, ARTIFACT_FILES["infer"]))

    sink = []  # type: List[Any]
    probe_net = fresh()
    trainable_bns = [b["bn"] for b in _blocks(spec) if "features.{}".format(b["bn"])
                     not in frozen_bns]
    _swap(probe_net, sorted(frozen_bns), FrozenBatchNorm)
    _swap(probe_net, ["features.{}".format(i) for i in trainable_bns],
          lambda bn: ProbeBatchNorm(bn, sink))
    stats_outputs = []
    for i in trainable_bns:
        stats_outputs += ["mean:features.{}".format(i), "var:features.{}".format(i)]
    if stats_outputs:
        _export(_Probe(probe_net, sink).train(), os.path.join(directory, ARTIFACT_FILES["bnstats"]),
                stats_outputs, opset, keep_inputs=True)
        _cap_ir_version(os.path.join(directory, ARTIFACT_FILES["bnstats"]))
    timings["export"] = time.perf_counter() - started

    started = time.perf_counter()
    if fields["optimizer"] == "adamw":
        optimizer = onnxblock.optim.AdamW(betas=tuple(fields["betas"]), eps=fields["eps"],
                                          weight_decay=fields["weight_decay"])
    else:
        optimizer = ort_artifacts.OptimType.SGD
    ort_artifacts.generate_artifacts(
        onnx.load(base), requires_grad=spec["trainable"], frozen_params=spec["frozen"],
        loss=ort_artifacts.LossType.CrossEntropyLoss, optimizer=optimizer,
        artifact_directory=directory)
    timings["generate"] = time.perf_counter() - started
    os.remove(base)
    return {"spec": spec, "stats_outputs": stats_outputs, "timings": timings,
            "versions": {"torch": torch.__version__, "onnx": onnx.__version__,
                         "onnxruntime": onnxruntime.__version__}}


def _blocks(spec):
    from toolkit.device.training.freeze import conv_blocks

    return conv_blocks(spec["model"])


def generate(job):
    # type: (Dict[str, Any]) -> Dict[str, Any]
    """The "ort_training_artifacts" job: build (or reuse) the artifact directory."""
    fields = key_fields(job)
    cache_dir = job["artifacts"]["cache_dir"]
    target = os.path.join(cache_dir, artifact_key(fields))
    manifest_path = os.path.join(target, ARTIFACT_FILES["manifest"])
    hit = os.path.isfile(manifest_path)
    if not hit:
        if not os.path.isdir(cache_dir):
            os.makedirs(cache_dir)
        tmp = "{}.tmp.{}".format(target, os.getpid())
        os.makedirs(tmp)
        try:
            info = build_artifacts(tmp, fields)
            manifest = {"fields": fields, "files": ARTIFACT_FILES,
                        "stats_outputs": info["stats_outputs"],
                        "trainable": info["spec"]["trainable"],
                        "frozen": info["spec"]["frozen"], "timings": info["timings"],
                        "versions": info["versions"], "created": time.time()}
            with open(os.path.join(tmp, ARTIFACT_FILES["manifest"]), "w") as handle:
                json.dump(manifest, handle, indent=1)
            try:
                os.rename(tmp, target)
            except OSError:  # another job made it meanwhile: identical content by construction
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    with open(manifest_path) as handle:
        manifest = json.load(handle)
    size = sum(os.path.getsize(os.path.join(target, f)) for f in os.listdir(target))
    records = [("cache_hit", float(hit), "count"), ("artifact_bytes", float(size), "B")]
    if not hit:
        records += [("export_time", manifest["timings"]["export"], "s"),
                    ("generate_time", manifest["timings"]["generate"], "s")]
    return {"records": records,
            "settings": {"artifact_dir": target, "key": os.path.basename(target),
                         "fields": fields},
            "versions": manifest["versions"]}
