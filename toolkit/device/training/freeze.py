"""Layer freezing: what `freeze=k` means, one definition for every training framework.

`freeze=k` freezes the first k conv blocks of a VGG (a block is conv3x3 + BatchNorm + ReLU; VGG-16
has 13, VGG-11 has 8), counted in forward order; k = 0 trains everything, k = 13 (VGG-16) trains
the classifier only. The classifier is never frozen. A frozen block

- has no trainable parameters (conv weight/bias, BN weight/bias): no gradients, no updates;
- runs its BatchNorm in inference mode (running statistics, which are not updated), so the frozen
  prefix is a fixed function of the input, exactly as a deployed pretrained backbone;
- needs no backward pass at all: the trainers run the frozen prefix (`features[:split]`, the
  frozen blocks plus any max-pool right after the last one) without building a graph (PyTorch:
  torch.no_grad(); ONNX Runtime Training: the frozen parameters are `frozen_params`, which removes
  their part of the backward graph).

Names are the PyTorch state_dict names of `toolkit.device.models.torch_modules.VGG`
(`features.<i>.weight`, `classifier.bias`, ...), which the TorchScript ONNX exporter keeps as
initializer names when constant folding is off, so one spec drives both frameworks.
Pure python: the host can plan with it without torch.
"""
from toolkit.errors import UserError

from ..models import vgg


def conv_blocks(model):
    # type: (str) -> List[Dict[str, Any]]
    """One entry per conv block in forward order: its conv, BN and ReLU indices in `features`."""
    layout = vgg.LAYOUTS.get(model)
    if layout is None:
        raise UserError("layer freezing is defined for {} only, not {!r}".format(
            ", ".join(sorted(vgg.LAYOUTS)), model))
    blocks, index = [], 0
    for op in layout:
        if op == "M":
            index += 1
            continue
        blocks.append({"block": len(blocks), "conv": index, "bn": index + 1, "relu": index + 2})
        index += 3
    return blocks


def _feature_split(model, freeze):
    # type: (str, int) -> int
    """Index into `features` where the trainable part starts (pools after the last frozen block
    belong to the frozen prefix: they have no parameters and need no gradient)."""
    if freeze == 0:
        return 0
    layout = vgg.LAYOUTS[model]
    index, seen = 0, 0
    for op in layout:
        if op == "M":
            index += 1
            continue
        if seen == freeze:
            return index
        seen += 1
        index += 3
    return index  # every block frozen: only the classifier remains


def freeze_spec(model, freeze):
    # type: (str, int) -> Dict[str, Any]
    """Trainable and frozen parameter names (and frozen BN modules) for `freeze=k`.

    Returns {"model", "freeze", "blocks", "split", "trainable", "frozen", "frozen_buffers",
    "eval_modules"}; "trainable" and "frozen" together are every parameter, in forward order.
    """
    blocks = conv_blocks(model)
    if isinstance(freeze, bool) or int(freeze) != freeze or not 0 <= freeze <= len(blocks):
        raise UserError("{}: freeze must be an integer in 0..{}, got {!r}".format(
            model, len(blocks), freeze))
    freeze = int(freeze)
    trainable, frozen, frozen_buffers, eval_modules = [], [], [], []
    for block in blocks:
        conv, bn = "features.{}".format(block["conv"]), "features.{}".format(block["bn"])
        names = [conv + ".weight", conv + ".bias", bn + ".weight", bn + ".bias"]
        if block["block"] < freeze:
            frozen += names
            frozen_buffers += [bn + ".running_mean", bn + ".running_var",
                               bn + ".num_batches_tracked"]
            eval_modules.append(bn)
        else:
            trainable += names
    trainable += ["classifier.weight", "classifier.bias"]
    return {"model": model, "freeze": freeze, "blocks": len(blocks),
            "split": _feature_split(model, freeze), "trainable": trainable, "frozen": frozen,
            "frozen_buffers": frozen_buffers, "eval_modules": eval_modules}
