"""Width scaling methods: uniform (toolkit.device.models.scale_widths) and NeuralScale.

`neuralscale` holds the fit, the solver and the JSON artifact (stdlib + numpy: the host can
solve architectures from an artifact without torch) plus the architecture descent, which imports
torch and `gates` lazily.
"""
