"""Channel gates, Taylor-FO importance and the pruning run of NeuralScale (torch).

A gate is one scalar per channel, fixed at 1 (0 once the channel is pruned) and never trained:
a plain tensor with requires_grad, multiplied into a layer's output by a forward hook, so the zoo
models need no gate code and the gates are not among the model's parameters (the optimizer never
sees them). Pruning MASKS channels (gate 0) as the public code does; the pruned network is never
rebuilt during the search. Masking is exact for every width list of the zoo, including residual
streams, because each free width has its own gate and the widths are independent (the zoo adds a
projection wherever a block's input and output widths differ, as the public code does for the
architectures it derives).

Where the gate sits for each width (width-list order of the model modules):
  vgg11/vgg16      after every conv's BatchNorm (before ReLU).
  preact_resnet18  stem width: after block 1's bn1 (the stem output's pre-activation feeding conv1
                   and the projection); block k's conv1 width: after its bn2; block k's output
                   width: after block k+1's bn1, for the last block after the final BN. As the
                   public code (its gate1/gate2/gate_out). An identity shortcut still carries the
                   ungated stream, as there.
  mobilenetv2      stem: after its BN; every block: on the block output (after the residual add,
                   the public code's gate_residual); last 1x1 conv: after its BN.
  resnet50         (not in the public code; same rules as MobileNetV2's residual gates) stem:
                   after bn1; every bottleneck: after bn1, after bn2, and on the block output
                   (after add + ReLU).

Importance of channel c in a window: the mean over the window's minibatches of (g_c * dL/dg_c)^2
(public prune.py: add_criteria, compute_saliency), L the minibatch's mean cross-entropy.
"""

import sys
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from toolkit.device.backends.pytorch import accuracy as training

from .. import models
from . import PRUNE_STOPS, PRUNE_TIES

_ONE_LEFT = "layer {} has one live channel (eugenelet/NeuralScale prune.py stop)"


def gate_points(model: str, net: nn.Module) -> List[nn.Module]:
    """The module after whose output each width's gate sits, in width-list order."""
    if model in ("vgg11", "vgg16"):
        points = [m for m in net.features if isinstance(m, nn.BatchNorm2d)]
    elif model == "preact_resnet18":
        blocks = list(net.layers)
        points = [blocks[0].bn1]
        for k, block in enumerate(blocks):
            points += [block.bn2, blocks[k + 1].bn1 if k + 1 < len(blocks) else net.bn_out]
    elif model == "mobilenetv2":
        points = [net.pre[1]] + list(net.stages) + [net.conv1[1]]
    elif model == "resnet50":
        points = [net.bn1]
        for block in net.layers:
            points += [block.bn1, block.bn2, block]
    else:
        raise ValueError("no gate layout for model {!r}".format(model))
    expected = len(models.full_widths(model))
    if len(points) != expected:
        raise AssertionError("{}: {} gate points for {} widths".format(model, len(points),
                                                                        expected))
    return points


class Gates(object):
    """Gates on a zoo network: attach with Gates(model, net), detach with remove()."""

    def __init__(self, model: str, net: nn.Module):
        self.model = model
        self.gates: List[torch.Tensor] = []
        self._handles = []
        self._sum: List[Optional[torch.Tensor]] = []
        self.batches = 0
        for point in gate_points(model, net):
            dtype = next(point.parameters()).dtype
            gate = torch.ones(_channels(point), dtype=dtype, requires_grad=True)
            self.gates.append(gate)
            self._sum.append(None)
            self._handles.append(point.register_forward_hook(_make_hook(gate)))

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def widths(self) -> List[int]:
        """Live channels per width."""
        return [int((g.detach() != 0).sum()) for g in self.gates]

    def total(self) -> int:
        return sum(len(g) for g in self.gates)

    def batch_importance(self) -> List[torch.Tensor]:
        """(g * dL/dg)^2 per channel from the gradients of the last backward pass."""
        out = []
        for g in self.gates:
            grad = g.grad if g.grad is not None else torch.zeros_like(g)
            out.append((g.detach() * grad.detach()) ** 2)
        return out

    def accumulate(self) -> None:
        """Add this minibatch's importance to the window and clear the gate gradients."""
        for i, crit in enumerate(self.batch_importance()):
            self._sum[i] = crit if self._sum[i] is None else self._sum[i] + crit
            self.gates[i].grad = None
        self.batches += 1

    def window_importance(self) -> List[np.ndarray]:
        """Mean importance over the accumulated window (float64 arrays)."""
        n = max(self.batches, 1)
        return [np.zeros(len(g)) if s is None else s.double().numpy() / n
                for g, s in zip(self.gates, self._sum)]  # noqa: B905 (Python 3.6)

    def reset_window(self) -> None:
        self._sum = [None] * len(self.gates)
        self.batches = 0

    def prune_least_important(self, n: int, stop_rule: str = "one_channel",
                              ties: str = "threshold") -> Dict[str, Any]:
        """Remove the live channels of lowest window importance, globally (no per-layer
        normalisation). Returns {"removed", "stop"}.

        ties "threshold" follows eugenelet/NeuralScale prune.py (compute_saliency, lines 176-194
        at 67ddedc): the threshold is the n-th smallest importance and every channel at or below
        it goes (`group[1] <= threshold_now`), so ties at the threshold, and every live channel
        of zero importance when the threshold is 0, go at once. "exact" (the toolkit's earlier
        rule): exactly n, ties broken by position.

        stop_rule "one_channel" follows eugenelet/NeuralScale prune.py (compute_saliency): layer
        by layer, before zeroing each selected channel it ends the search if that layer has one
        live channel, and a layer's pruned channels (importance 0) always count as selected. So
        the step that takes a layer down to one channel completes, the next step stops, a step
        selecting every live channel of a layer removes all but one and stops, and removals made
        earlier in a stopping step stay. "empty_layer" (the toolkit's earlier rule): a step that
        would empty a layer removes nothing and stops.
        """
        if stop_rule not in PRUNE_STOPS:
            raise ValueError("stop_rule must be one of {}, got {!r}".format(PRUNE_STOPS,
                                                                           stop_rule))
        if ties not in PRUNE_TIES:
            raise ValueError("ties must be one of {}, got {!r}".format(PRUNE_TIES, ties))
        crit = self.window_importance()
        layer_of, index_of, value = [], [], []
        for layer, (g, c) in enumerate(zip(self.gates, crit)):  # noqa: B905 (Python 3.6)
            live = np.flatnonzero(g.detach().numpy() != 0)
            layer_of += [layer] * len(live)
            index_of += live.tolist()
            value += c[live].tolist()
        values = np.asarray(value, dtype=np.float64)
        order = np.argsort(values, kind="stable")
        if ties == "threshold" and int(n) >= 1 and len(order):
            # sorted(all)[pruned + n - 1] there: pruned channels count 0 and sort first, so it
            # is the n-th smallest live importance
            threshold = values[order[min(int(n), len(order)) - 1]]
            order = order[values[order] <= threshold]
        else:
            order = order[:int(n)]
        chosen: Dict[int, List[int]] = {}
        for k in order:  # per layer in ascending importance, as the public loop visits them
            chosen.setdefault(layer_of[k], []).append(index_of[k])
        live_now = self.widths()
        if stop_rule == "empty_layer":
            for layer, idx in chosen.items():
                if len(idx) >= live_now[layer]:
                    return {"removed": 0,
                            "stop": "layer {} would lose its last channel".format(layer)}
        removed = 0
        with torch.no_grad():
            for layer, live in enumerate(live_now):
                pruned = live < len(self.gates[layer])
                if stop_rule == "one_channel" and pruned and live == 1:
                    return {"removed": removed, "stop": _ONE_LEFT.format(layer)}
                for channel in chosen.get(layer, []):
                    if live == 1:  # "empty_layer" never gets here: checked above
                        return {"removed": removed, "stop": _ONE_LEFT.format(layer)}
                    self.gates[layer][channel] = 0.0
                    live -= 1
                    removed += 1
        return {"removed": removed, "stop": None}


def _channels(point: nn.Module) -> int:
    if isinstance(point, nn.BatchNorm2d):
        return point.num_features
    # a residual block: its output width
    for attr in ("bn3", "residual"):
        sub = getattr(point, attr, None)
        if isinstance(sub, nn.BatchNorm2d):
            return sub.num_features
        if isinstance(sub, nn.Sequential):
            return [m for m in sub if isinstance(m, nn.BatchNorm2d)][-1].num_features
    raise ValueError("cannot tell the width of {}".format(type(point).__name__))


def _make_hook(gate: torch.Tensor):
    def hook(module, inputs, output):
        return output * gate.view(1, -1, 1, 1)

    return hook


# ------------------------------------------------------------------------------ pruning search


def search_lr(epoch: int, cfg: Dict[str, Any]) -> float:
    """The public search schedule (utils.adjust_learning_rate, search=True): lr until the
    warm-up's last epoch, then warmup_end_lr divided by lr_decay every lr_decay_every epochs."""
    warm = int(cfg["warmup_epochs"])
    if epoch < warm:
        return float(cfg["lr"])
    steps = (epoch - warm) // int(cfg["lr_decay_every"])
    return float(cfg["warmup_end_lr"]) / float(cfg["lr_decay"]) ** steps


def prune_search(model: str, widths: Sequence[int], dataset, cfg: Dict[str, Any], seed: int = 0,
                 log=None) -> Dict[str, Any]:
    """Train build_model(model, widths, classes, seed) with gates; after cfg["warmup_epochs"]
    epochs accumulate importance every minibatch and, every cfg["window"] minibatches (the first
    window cfg["first_window_extra"] more), remove cfg["prune_per_step"] channels globally
    (cfg["prune_ties"]: with the channels tied at the threshold, or exactly that many). Stops
    when max_prune_fraction of the channels are gone, by cfg["prune_stop"]
    (Gates.prune_least_important), or after cfg["epochs"] epochs.

    Returns {"records": width lists after each completed removal step once every layer has lost
    a channel, "final_widths" (live widths at the end, a stopping step's removals included),
    "stop_reason", "pruning_stopped" (False: the epoch limit ended it), "removal_steps",
    "epochs", "minibatches", "seconds"}.
    """
    log = sys.stderr if log is None else log
    started = time.time()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        net = models.build_model(model, widths, dataset.classes, seed)
        gates = Gates(model, net)
        optimizer = training.make_optimizer(net.parameters(), cfg)
        rng = training.data_rng(seed)
        total = gates.total()
        max_removed = int(total * float(cfg["max_prune_fraction"]))
        start_widths = gates.widths()
        state = {"records": [], "steps": 0, "stop": None, "batches": 0, "windows": 0}

        def on_step(step):
            state["batches"] += 1
            gates.accumulate()
            # eugenelet/NeuralScale prune.py do_step (lines 340-355 at 67ddedc): iter_step starts
            # at -1 and it prunes when niter % frequency == 0 and niter != 0, so the first window
            # holds minibatches 0..50 (51), each later one 50
            extra = int(cfg["first_window_extra"]) if state["windows"] == 0 else 0
            if gates.batches < int(cfg["window"]) + extra:
                return True
            state["windows"] += 1
            removed = total - sum(gates.widths())
            n = min(int(cfg["prune_per_step"]), max_removed - removed)
            if n <= 0:
                state["stop"] = "removed {} of {} channels (max fraction {})".format(
                    removed, total, cfg["max_prune_fraction"])
                return False
            outcome = gates.prune_least_important(n, cfg["prune_stop"], cfg["prune_ties"])
            gates.reset_window()
            if outcome["stop"]:
                state["stop"] = outcome["stop"]
                return False
            state["steps"] += 1
            now = gates.widths()
            if all(w < s for w, s in zip(now, start_widths)):  # noqa: B905 (Python 3.6)
                state["records"].append(now)
            if total - sum(now) >= max_removed:
                state["stop"] = "removed {} of {} channels (max fraction {})".format(
                    total - sum(now), total, cfg["max_prune_fraction"])
                return False
            return True

        epoch = 0
        label = "neuralscale {}".format(model)
        for epoch in range(1, int(cfg["epochs"]) + 1):
            lr = search_lr(epoch, cfg)
            training.set_lr(optimizer, lr)
            pruning = epoch > int(cfg["warmup_epochs"])
            stats = training.train_epoch(net, optimizer, dataset, rng, cfg, epoch=epoch,
                                         on_step=on_step if pruning else _clear(gates), log=log,
                                         label=label)
            log.write("{} epoch {} lr {:g} loss {:.4f} acc {:.3f} widths {} records {} "
                      "{:.1f}s\n".format(label, epoch, lr, stats["loss"], stats["acc"],
                                         sum(gates.widths()), len(state["records"]),
                                         stats["seconds"]))
            log.flush()
            if state["stop"]:
                break
        final = gates.widths()
        gates.remove()
    return {"records": state["records"], "final_widths": final,
            "stop_reason": state["stop"] or "epoch limit {} reached".format(cfg["epochs"]),
            "pruning_stopped": state["stop"] is not None,
            "removal_steps": state["steps"], "epochs": epoch, "minibatches": state["batches"],
            "channels": total, "seconds": round(time.time() - started, 3)}


def _clear(gates: Gates):
    def on_step(step):
        for g in gates.gates:
            g.grad = None
        return True

    return on_step
