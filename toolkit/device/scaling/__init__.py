"""Width scaling methods: uniform (toolkit.device.models.scale_widths) and NeuralScale.

`neuralscale` holds the fit, the solver and the JSON artifact (stdlib + numpy: the host can
solve architectures from an artifact without torch) plus the architecture descent, which imports
torch and `gates` lazily.
"""

# How a pruning run ends (gates.Gates.prune_least_important): "one_channel", as the public code
# (prune.py), when any layer is down to one live channel; "empty_layer", the toolkit's earlier
# rule. Here, not in either module, so that both read it without importing each other.
PRUNE_STOPS = ("one_channel", "empty_layer")
# Which live channels a removal step takes (gates.Gates.prune_least_important): "threshold", as
# the public code (prune.py compute_saliency), every one whose importance is at most the n-th
# smallest (ties, zero-importance channels included, all go at once); "exact", the toolkit's
# earlier rule, exactly n (ties broken by position).
PRUNE_TIES = ("threshold", "exact")
