"""Framework-neutral training parts: the data and timed loop (common), FLOP counts (flops),
layer freezing (freeze), the step graph and its NumPy reference executor, the measured peak."""
