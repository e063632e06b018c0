"""Process memory from the kernel: peak RSS (ru_maxrss), not a sampler."""
import resource
import sys
from typing import Optional


def _maxrss_to_bytes(maxrss):
    # type: (int) -> int
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    return int(maxrss) if sys.platform == "darwin" else int(maxrss) * 1024


def peak_rss_bytes():
    # type: () -> int
    """High-water mark of this process's resident set since it started."""
    return _maxrss_to_bytes(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


# Peak memory of this process's cgroup: in a container, the container's own (cgroup namespace).
_CGROUP_PEAK_FILES = (
    "/sys/fs/cgroup/memory.peak",  # cgroup v2 (kernel >= 5.19)
    "/sys/fs/cgroup/memory/memory.max_usage_in_bytes",  # cgroup v1
)


def cgroup_peak_bytes() -> Optional[int]:
    """High-water mark of the cgroup's memory (page cache included), or None if unreadable."""
    for path in _CGROUP_PEAK_FILES:
        try:
            with open(path) as handle:
                return int(handle.read().strip())
        except (OSError, ValueError):
            continue
    return None
