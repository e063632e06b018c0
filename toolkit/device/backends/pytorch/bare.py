"""A bare PyTorch training loop: what a training cell's step is compared with
(`invoke bench --name training_harness_overhead`).

Written the plain way and sharing none of the cell's timed code (no scenario, sampling protocol
or TorchTrainer), it reads the cell's own job, so only the harness differs: the same model
(the models package), frozen prefix (freeze.py; under no_grad, its BatchNorms in eval),
optimizer and hyper-parameters (common.opt_settings), threads, batch and seed. Inputs are
random batches made before timing; each optimizer step is timed alone. fp32 on the CPU only.

Two jobs:
- "training_bare": the loop alone in its process (`protocol.warmup_count` warm-up steps, then
  `protocol.min_count` timed ones), to compare with a cell's process through the same runner;
- "training_harness_overhead": the cell's own path (TorchBackend and common.timed_training, as
  the training scenario calls them) and the bare loop alternately in one process, as the
  inference bench compares its harness with a bare session.run loop.
"""
import statistics
import time

from toolkit.device.measure.sampling import Protocol
from toolkit.device.measure.stats import summarize
from toolkit.device.results import NotRun
from toolkit.device.training import common
from toolkit.device.training.freeze import freeze_spec


class BareLoop(object):
    """The cell's model, optimizer and frozen prefix, built and stepped the plain way."""

    def __init__(self, job):
        # type: (Dict[str, Any]) -> None
        import torch

        from toolkit.device.models import build_model

        coords, settings = job["coords"], job["settings"]
        if coords.get("device", "cpu") != "cpu" or coords.get("precision", "fp32") != "fp32":
            raise NotRun("the bare loop runs fp32 on the CPU only")
        if settings.get("threads"):
            torch.set_num_threads(int(settings["threads"]))
        self.torch = torch
        batch, seed = int(coords["batch"]), int(settings.get("seed", 0))
        torch.manual_seed(seed)
        model, self.widths = common.model_widths(settings)
        self.classes = int(settings.get("classes", 10))
        self.net = net = build_model(model, self.widths, self.classes, seed)
        self.spec = spec = freeze_spec(model, int(coords.get("freeze", 0)))
        frozen = set(spec["frozen"])
        for name, parameter in net.named_parameters():
            parameter.requires_grad_(name not in frozen)
        net.train()
        modules = dict(net.named_modules())
        for name in spec["eval_modules"]:
            modules[name].eval()
        trainable = [p for p in net.parameters() if p.requires_grad]
        self.opt = opt = common.opt_settings(settings)
        if opt["optimizer"] == "sgd":
            self.optimizer = torch.optim.SGD(trainable, lr=opt["lr"], momentum=opt["momentum"],
                                             weight_decay=opt["weight_decay"])
        else:
            self.optimizer = torch.optim.AdamW(trainable, lr=opt["lr"],
                                               betas=tuple(opt["betas"]), eps=opt["eps"],
                                               weight_decay=opt["weight_decay"])
        self.prefix = net.features[:spec["split"]]
        self.rest = net.features[spec["split"]:]
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.inputs = [(torch.randn(batch, 3, 32, 32), torch.randint(0, self.classes, (batch,)))
                       for _ in range(int(settings.get("distinct_batches", 4)))]
        self.position = 0

    def steps(self, count):
        # type: (int) -> List[float]
        """Seconds of each of `count` optimizer steps."""
        torch, net, optimizer = self.torch, self.net, self.optimizer
        times = []
        for _ in range(int(count)):
            x, y = self.inputs[self.position % len(self.inputs)]
            self.position += 1
            started = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            if self.spec["split"]:
                with torch.no_grad():
                    x = self.prefix(x)
            loss = self.loss_fn(net.classifier(torch.flatten(self.rest(x), 1)), y)
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - started)
        return times

    def settings(self):
        # type: () -> Dict[str, Any]
        return dict(self.opt, threads=self.torch.get_num_threads(),
                    freeze_split=self.spec["split"],
                    trainable_params=[name for name, p in self.net.named_parameters()
                                      if p.requires_grad],
                    classes=self.classes, widths=self.widths)


def run(job):
    # type: (Dict[str, Any]) -> Dict[str, Any]
    """The "training_bare" job for framework "pytorch": step times and the settings used."""
    loop = BareLoop(job)
    warmup = int(job["protocol"]["warmup_count"])
    samples = loop.steps(warmup + int(job["protocol"]["min_count"]))[warmup:]
    return {"records": [("step_time_p50", summarize(samples)["p50"], "s"),
                        ("steps", float(len(samples)), "count")],
            "samples": {"step_time": {"unit": "s", "values": samples}},
            "settings": loop.settings(), "versions": {"torch": loop.torch.__version__}}


def harness_overhead(job):
    # type: (Dict[str, Any]) -> Dict[str, Any]
    """The "training_harness_overhead" job: step p50 through the cell's path vs the bare loop,
    in alternating blocks (settings "rounds"; each block the protocol's warm-up and min_count
    steps, order swapped every round) in this one process; the overhead is the median of the
    rounds' ratios - 1, so the machine's drift cancels instead of landing on one side."""
    from toolkit.device.backends.pytorch.trainer import TorchBackend

    settings = dict(job["settings"], epochs=0)  # timing only: cycled prepared batches
    job = dict(job, settings=settings)
    backend = TorchBackend()
    backend.check(job)
    dataset = common.load_data(job)
    backend.setup(job, dataset)
    loop = BareLoop(job)
    protocol = Protocol.from_dict(dict(job["protocol"], warmup_seconds=0.0, min_seconds=0.0))
    batch, seed = int(job["coords"]["batch"]), int(settings.get("seed", 0))

    def cell_block():
        # type: () -> List[float]
        return common.timed_training(backend.step, dataset, batch, 0, seed, settings, protocol,
                                     backend.prepare)[2]

    def bare_block():
        # type: () -> List[float]
        return loop.steps(protocol.warmup_count + 1 + protocol.min_count)[
            protocol.warmup_count + 1:]  # the cell's first step and warm-up are not timed

    cell, bare, ratios = [], [], []  # type: List[float], List[float], List[float]
    for index in range(int(settings.get("rounds", 5))):
        if index % 2:
            b, c = bare_block(), cell_block()
        else:
            c, b = cell_block(), bare_block()
        ratios.append(summarize(c)["p50"] / summarize(b)["p50"])
        cell += c
        bare += b
    return {"records": [("cell_p50", summarize(cell)["p50"], "s"),
                        ("bare_p50", summarize(bare)["p50"], "s"),
                        ("overhead", statistics.median(ratios) - 1.0, "ratio"),
                        ("rounds", float(len(ratios)), "count"),
                        ("cell_n", float(len(cell)), "count"),
                        ("bare_n", float(len(bare)), "count")],
            "settings": {"cell": backend.describe()["settings"], "bare": loop.settings()},
            "versions": {"torch": loop.torch.__version__}}
