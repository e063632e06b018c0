"""Width scaling methods: uniform (toolkit.device.models.scale_widths) and NeuralScale.

`neuralscale` holds the fit, the solver and the JSON artifact (stdlib + numpy: the host can
solve architectures from an artifact without torch) plus the architecture descent, which imports
torch and `gates` lazily.
"""

# How a pruning run ends (gates.Gates.prune_least_important): "one_channel", as the public code
# (prune.py), when any layer is down to one live channel; "empty_layer", the toolkit's earlier
# rule. Here, not in either module, so that both read it without importing each other.
PRUNE_STOPS = ("one_channel", "empty_layer")
