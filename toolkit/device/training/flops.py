"""Analytic training FLOPs per image (pure python, from the width list).

Counted: the multiply-adds of convolutions and the classifier (1 MAC = 2 FLOP), the work that
dominates and that "model FLOP utilisation" (MFU) conventionally refers to. Not counted: biases,
BatchNorm, ReLU, pooling, the loss and the optimizer update (all O(activations) or O(params),
well under 1 % for VGG at batch >= 16).

Training counts only the 3x3 taps that fall on the input, not on its zero padding: a tap on the
padding multiplies by zero, and CPU kernels (oneDNN's direct convolution) skip it. On a 32x32
image VGG-16's last blocks run on 4x4 and 2x2 maps, where padding is 31 % and 56 % of the taps:
counting them (the convention of inference MAC counts, `layer_macs(..., padding_taps=True)`)
would credit a kernel with work it never did and push utilisation past 100 % of any real peak.
Per map side s, a 3x3 convolution with padding 1 has (3s - 2)^2 useful taps per output channel
and input channel, against 9 s^2 with the padding.

Per image, for layer l with M_l multiply-adds in the forward pass:
- forward: 2 * M_l for EVERY layer (the frozen prefix still runs forward);
- weight gradient: 2 * M_l for every trainable layer (dW = dY^T X has the same MACs as Y = W X);
- input gradient: 2 * M_l for every layer ABOVE the first trainable one (dX = W^T dY is needed only
  when something below still wants a gradient; the first trainable layer's input gradient is
  unused, and the first conv's never exists since the image has none).
So with no freezing, train = 3 * forward - 2 * M_0 (M_0 is the first conv: 0.6 % of VGG-16), and
freezing the first k blocks removes both backward terms for them.
"""
from toolkit.errors import UserError

from ..models import vgg
from ..models._common import check_positive, check_widths


def conv_taps(size, padding_taps=True):
    # type: (int, bool) -> int
    """Taps of a 3x3, stride-1, padding-1 convolution over a size x size map, per output and
    input channel: with the padding's, or only those on the input."""
    return 9 * size * size if padding_taps else (3 * size - 2) ** 2


def conv_shapes(model, widths, image_size=32):
    # type: (str, Sequence[int], int) -> List[Tuple[int, int, int]]
    """(input channels, output channels, map side) of each conv layer, in forward order."""
    return [shape for shape, _ in _walk(model, widths, image_size)[0]]


def _walk(model, widths, image_size):
    # type: (str, Sequence[int], int) -> Tuple[List[Tuple[Tuple[int, int, int], str]], int, int]
    layout = vgg.LAYOUTS.get(model)
    if layout is None:
        raise UserError("training FLOPs are defined for {} only, not {!r}".format(
            ", ".join(sorted(vgg.LAYOUTS)), model))
    w = check_widths(model, widths, len(vgg.FULL_WIDTHS[model]))
    size = check_positive("image_size", image_size)
    convs, cin = [], 3
    for op in layout:
        if op == "M":
            size //= 2
            continue
        convs.append(((cin, w[len(convs)], size), "conv{}".format(len(convs) + 1)))
        cin = w[len(convs) - 1]
    if size != 1:
        raise UserError("{}: image_size must be 32..63 (final map 1x1), got {}".format(
            model, image_size))
    return convs, cin, size


def layer_macs(model, widths, classes=10, image_size=32, padding_taps=True):
    # type: (str, Sequence[int], int, int, bool) -> List[Tuple[str, int]]
    """Forward multiply-adds per layer and image, in forward order: conv1..convN, classifier;
    `padding_taps=False` leaves out the taps on the zero padding."""
    classes = check_positive("classes", classes)
    convs, cin, size = _walk(model, widths, image_size)
    layers = [(name, conv_taps(side, padding_taps) * cout * c_in)
              for (c_in, cout, side), name in convs]
    layers.append(("classifier", cin * size * size * classes))
    return layers


def training_flops(model, widths, freeze=0, classes=10, image_size=32):
    # type: (str, Sequence[int], int, int, int) -> Dict[str, Any]
    """FLOPs per image of one training step with the first `freeze` conv blocks frozen.

    Returns {"forward", "backward_weight", "backward_input", "backward", "train" (all FLOP per
    image), "train_ratio" (train / train at freeze 0), "layers": [{name, macs, forward,
    backward_weight, backward_input, trainable}]}.
    """
    layers = layer_macs(model, widths, classes, image_size, padding_taps=False)
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
