"""A scaled network's target size at ratio r, shared by our solver (neuralscale.py) and the
port of the public one (public_solver.py)."""

from toolkit.errors import UserError

from .. import models

TARGET_MODES = ("width", "params")


def target_params(model: str, ratio: float, classes: int = 10, mode: str = "width") -> int:
    """Target size at ratio r: mode "width" (NeuralScale): parameters of the uniformly
    width-scaled network (scale_widths, int truncation); mode "params" (Gealy's thesis):
    r x the full network's parameters, rounded."""
    if mode not in TARGET_MODES:
        raise UserError("target mode must be one of {}, got {!r}".format(TARGET_MODES, mode))
    if mode == "width":
        return models.count_params(model, models.scale_widths(model, ratio), classes)
    full = models.count_params(model, models.full_widths(model), classes)
    return int(round(float(ratio) * full))
