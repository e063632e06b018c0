"""Analytic training FLOPs per image (pure python, from the width list).

Counted: the multiply-adds of convolutions and the classifier (1 MAC = 2 FLOP), the work that
dominates and that "model FLOP utilisation" (MFU) conventionally refers to. Not counted: biases,
BatchNorm, ReLU, pooling, the loss and the optimizer update (all O(activations) or O(params),
well under 1 % for VGG at batch >= 16).

Per image, for layer l with M_l multiply-adds in the forward pass:
- forward: 2 * M_l for EVERY layer (the frozen prefix still runs forward);
- weight gradient: 2 * M_l for every trainable layer (dW = dY^T X has the same MACs as Y = W X);
- input gradient: 2 * M_l for every layer ABOVE the first trainable one (dX = W^T dY is needed only
  when something below still wants a gradient; the first trainable layer's input gradient is
  unused, and the first conv's never exists since the image has none).
So with no freezing, train = 3 * forward - 2 * M_0 (M_0 is the first conv: 0.6 % of VGG-16), and
freezing the first k blocks removes both backward terms for them.
"""
from ..errors import UserError
from ..models import vgg
from ..models._common import check_positive, check_widths


def layer_macs(model, widths, classes=10, image_size=32):
    # type: (str, Sequence[int], int, int) -> List[Tuple[str, int]]
    """Forward multiply-adds per layer and image, in forward order: conv1..convN, classifier."""
    layout = vgg.LAYOUTS.get(model)
    if layout is None:
        raise UserError("training FLOPs are defined for {} only, not {!r}".format(
            ", ".join(sorted(vgg.LAYOUTS)), model))
    w = check_widths(model, widths, len(vgg.FULL_WIDTHS[model]))
    classes = check_positive("classes", classes)
    size = check_positive("image_size", image_size)
    layers, cin = [], 3
    for op in layout:
        if op == "M":
            size //= 2
            continue
        cout = w[len(layers)]
        layers.append(("conv{}".format(len(layers) + 1), size * size * cout * cin * 9))
        cin = cout
    if size != 1:
        raise UserError("{}: image_size must be 32..63 (final map 1x1), got {}".format(
            model, image_size))
    layers.append(("classifier", cin * size * size * classes))
    return layers


def training_flops(model, widths, freeze=0, classes=10, image_size=32):
    # type: (str, Sequence[int], int, int, int) -> Dict[str, Any]
    """FLOPs per image of one training step with the first `freeze` conv blocks frozen.

    Returns {"forward", "backward_weight", "backward_input", "backward", "train" (all FLOP per
    image), "train_ratio" (train / train at freeze 0), "layers": [{name, macs, forward,
    backward_weight, backward_input, trainable}]}.
    """
    layers = layer_macs(model, widths, classes, image_size)
    n_convs = len(layers) - 1
    if isinstance(freeze, bool) or int(freeze) != freeze or not 0 <= freeze <= n_convs:
        raise UserError("{}: freeze must be an integer in 0..{}, got {!r}".format(
            model, n_convs, freeze))
    rows = []
    for index, (name, macs) in enumerate(layers):
        trainable = index >= freeze
        rows.append({"name": name, "macs": macs, "forward": 2 * macs, "trainable": trainable,
                     "backward_weight": 2 * macs if trainable else 0,
                     "backward_input": 2 * macs if index > freeze else 0})
    forward = sum(r["forward"] for r in rows)
    weight = sum(r["backward_weight"] for r in rows)
    inputs = sum(r["backward_input"] for r in rows)
    full = 3 * forward - 2 * layers[0][1]
    return {"forward": forward, "backward_weight": weight, "backward_input": inputs,
            "backward": weight + inputs, "train": forward + weight + inputs,
            "train_ratio": (forward + weight + inputs) / float(full), "layers": rows}
