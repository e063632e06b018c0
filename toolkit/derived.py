"""Derived figures: the one place that defines metrics computed from measured ones.

Units follow the studies: accuracy per MB uses 10^6 bytes of runtime memory; memory per
parameter is in bytes per parameter.

Runtime memory: on the CPU, the model's share of the cell process's peak RSS (peak minus the
import baseline, "model_memory"). On a GPU, the device-side peak ("gpu_memory_peak_delta": the
cudaMemGetInfo delta from before the model was loaded to its largest value while it ran): on a
Jetson, CUDA and TensorRT allocations live in the shared DRAM through nvmap and do not show in
the process's RSS, so RSS would miss the very memory the GPU claims are about.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

RUNTIME_MEMORY = "runtime_memory"
GPU_MEMORY = "gpu_memory_peak_delta"
CPU_MEMORY = "model_memory"


def runtime_memory(metrics: dict[str, Any]) -> float | None:
    """The device-side figure where the cell ran on a GPU, else the model's RSS share."""
    value = metrics.get(GPU_MEMORY, metrics.get(CPU_MEMORY))
    return None if value is None else float(value)


def _ratio(numerator: float | None, denominator: float | None, scale: float = 1.0,
           ) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / (denominator * scale)


DERIVED: dict[str, tuple[str, Callable[[dict[str, Any]], float | None]]] = {
    RUNTIME_MEMORY: ("B", runtime_memory),
    "accuracy_per_mb": ("1/MB", lambda m: _ratio(m.get("accuracy"), runtime_memory(m), 1e-6)),
    "memory_per_param": ("B", lambda m: _ratio(runtime_memory(m), m.get("params"))),
}


# The measured metrics each derived one is computed from (which of them vary by round decides
# what a derived figure's interval covers: claims.py).
INPUTS: dict[str, tuple[str, ...]] = {
    RUNTIME_MEMORY: (GPU_MEMORY, CPU_MEMORY),
    "accuracy_per_mb": ("accuracy", GPU_MEMORY, CPU_MEMORY),
    "memory_per_param": (GPU_MEMORY, CPU_MEMORY, "params"),
}


def derived_inputs(name: str) -> tuple[str, ...]:
    """The measured metrics a figure is computed from (itself, for a measured one)."""
    return INPUTS.get(name, (name,))


def utilisation(achieved: dict[str, float], peaks: dict[tuple[str, str], float],
                coords: dict[str, tuple[str, str]]) -> dict[str, float]:
    """Model-FLOP utilisation (MFU) per training cell: its achieved FLOP/s over the peak that
    the run measured on the same device in the cell's own precision (bf16 cells against the
    bf16 peak, not the fp32 one). achieved: cell -> FLOP/s; peaks: (device, precision) ->
    FLOP/s; coords: cell -> (device, precision). Cells without a matching peak get none."""
    out = {}
    for cell, flops in achieved.items():
        peak = peaks.get(coords.get(cell, ("", "")))
        if peak:
            out[cell] = flops / peak
    return out


def metric_value(metrics: dict[str, Any], name: str) -> float | None:
    """A measured metric, or a derived one computed from the measured ones."""
    if name in DERIVED:
        return DERIVED[name][1](metrics)
    value = metrics.get(name)
    return None if value is None else float(value)


MFU = "mfu"
ACHIEVED_FLOPS = "achieved_flops"
PEAK_PREFIX = "peak_flops_"  # peak_flops_<precision>: a peak cell's measured matmul FLOP/s
THEORETICAL_SUFFIX = "_theoretical"  # a bound the measured peak is checked against, not a peak


def derived_values(measured: dict[str, float]) -> dict[str, tuple[float, str]]:
    """Every derived figure (DERIVED) that a cell's measured metrics allow, with its unit:
    what the report shows beside the measured figures."""
    out = {}
    for name, (unit, _) in DERIVED.items():
        value = metric_value(measured, name)
        if value is not None:
            out[name] = (value, unit)
    return out


def run_utilisation(measured: dict[str, dict[str, float]],
                    coords: dict[str, tuple[str, str]]) -> dict[str, float]:
    """MFU of every cell of a run with an achieved FLOP/s, against the peaks that the run's own
    peak cells measured (theoretical bounds are no peak). measured: cell -> metric -> value;
    coords: cell -> (device, precision)."""
    peaks = {(coords[cell][0], name[len(PEAK_PREFIX):]): value
             for cell, metrics in measured.items() if cell in coords
             for name, value in metrics.items()
             if name.startswith(PEAK_PREFIX) and not name.endswith(THEORETICAL_SUFFIX)}
    achieved = {cell: metrics[ACHIEVED_FLOPS] for cell, metrics in measured.items()
                if ACHIEVED_FLOPS in metrics}
    return utilisation(achieved, peaks, coords)
