"""Device-side memory of a GPU cell: cudaMemGetInfo deltas against a baseline, by stage.

Works with any module offering `mem_get_info() -> (free, total)`: pycuda.driver (TensorRT cells)
and torch.cuda (PyTorch cells). On an integrated GPU (Jetson) the GPU shares DRAM with the CPU:
CUDA and TensorRT allocations go through nvmap and never show in the process's RSS, so these
deltas (and the system-wide MemAvailable deltas beside them) are the cell's runtime memory
(toolkit/derived.py reads gpu_memory_peak_delta).
"""


def device_used_bytes(cuda):
    # type: (Any) -> int
    """Device memory in use on the whole GPU (total - free, cudaMemGetInfo)."""
    free, total = cuda.mem_get_info()
    return int(total - free)


def system_available_bytes():
    # type: () -> Optional[int]
    """MemAvailable from /proc/meminfo (Jetson: GPU and CPU share DRAM), None if unreadable."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class MemoryProbe(object):
    """Device (and on an integrated GPU, system) memory deltas against a baseline, by stage."""

    def __init__(self, cuda, integrated):
        self.cuda, self.integrated = cuda, integrated
        self.base_device = device_used_bytes(cuda)
        self.base_system = system_available_bytes() if integrated else None
        self.stages = []  # type: List[Tuple[str, int, Optional[int]]]
        self.peak_device = 0

    def mark(self, stage):
        # type: (str) -> int
        device = device_used_bytes(self.cuda) - self.base_device
        system = None
        if self.base_system is not None:
            now = system_available_bytes()
            system = None if now is None else self.base_system - now
        self.stages.append((stage, device, system))
        self.peak_device = max(self.peak_device, device)
        return device

    def records(self):
        # type: () -> List[Tuple[str, float, str]]
        out = [("gpu_memory_baseline", float(self.base_device), "B")]
        for stage, device, system in self.stages:
            out.append(("gpu_memory_delta_" + stage, float(device), "B"))
            if system is not None:
                out.append(("system_memory_delta_" + stage, float(system), "B"))
        out.append(("gpu_memory_peak_delta", float(self.peak_device), "B"))
        return out
