"""A bare PyTorch training loop: what a training cell's step is compared with
(`invoke bench --name training_harness_overhead`).

Written the plain way and sharing none of the cell's timed code (no scenario, sampling protocol
or TorchTrainer), it reads the cell's own job, so only the harness differs: the same model
(the models package), frozen prefix (freeze.py; under no_grad, its BatchNorms in eval),
optimizer and hyper-parameters (common.opt_settings), threads, batch and seed. Inputs are
random batches made before timing; each optimizer step is timed alone, `protocol.warmup_count`
warm-up steps first, then `protocol.min_count` timed ones. fp32 on the CPU only.
"""
import time

from toolkit.device.measure.stats import summarize
from toolkit.device.results import NotRun
from toolkit.device.training import common
from toolkit.device.training.freeze import freeze_spec


def run(job):
    # type: (Dict[str, Any]) -> Dict[str, Any]
    """The "training_bare" job for framework "pytorch": step times and the settings used."""
    import torch

    from toolkit.device.models import build_model

    coords, settings, protocol = job["coords"], job["settings"], job["protocol"]
    if coords.get("device", "cpu") != "cpu" or coords.get("precision", "fp32") != "fp32":
        raise NotRun("the bare loop runs fp32 on the CPU only")
    if settings.get("threads"):
        torch.set_num_threads(int(settings["threads"]))
    batch, seed = int(coords["batch"]), int(settings.get("seed", 0))
    torch.manual_seed(seed)
    model, widths = common.model_widths(settings)
    classes = int(settings.get("classes", 10))
    net = build_model(model, widths, classes, seed)
    spec = freeze_spec(model, int(coords.get("freeze", 0)))
    frozen = set(spec["frozen"])
    for name, parameter in net.named_parameters():
        parameter.requires_grad_(name not in frozen)
    net.train()
    modules = dict(net.named_modules())
    for name in spec["eval_modules"]:
        modules[name].eval()
    trainable = [p for p in net.parameters() if p.requires_grad]
    opt = common.opt_settings(settings)
    if opt["optimizer"] == "sgd":
        optimizer = torch.optim.SGD(trainable, lr=opt["lr"], momentum=opt["momentum"],
                                    weight_decay=opt["weight_decay"])
    else:
        optimizer = torch.optim.AdamW(trainable, lr=opt["lr"], betas=tuple(opt["betas"]),
                                      eps=opt["eps"], weight_decay=opt["weight_decay"])
    prefix, rest = net.features[:spec["split"]], net.features[spec["split"]:]
    loss_fn = torch.nn.CrossEntropyLoss()
    count = int(settings.get("distinct_batches", 4))
    inputs = [(torch.randn(batch, 3, 32, 32), torch.randint(0, classes, (batch,)))
              for _ in range(count)]
    warmup, steps = int(protocol["warmup_count"]), int(protocol["min_count"])
    times = []
    for index in range(warmup + steps):
        x, y = inputs[index % count]
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        if spec["split"]:
            with torch.no_grad():
                x = prefix(x)
        loss = loss_fn(net.classifier(torch.flatten(rest(x), 1)), y)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    samples = times[warmup:]
    return {"records": [("step_time_p50", summarize(samples)["p50"], "s"),
                        ("steps", float(len(samples)), "count")],
            "samples": {"step_time": {"unit": "s", "values": samples}},
            "settings": dict(opt, threads=torch.get_num_threads(), freeze_split=spec["split"],
                             trainable_params=[name for name, p in net.named_parameters()
                                               if p.requires_grad],
                             classes=classes, widths=widths),
            "versions": {"torch": torch.__version__}}
