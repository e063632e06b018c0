"""The CPU's core clock under load, measured: the clock term of the theoretical FLOP peak.

A virtual machine rarely exposes cpufreq, and the nominal "cpu MHz" it shows is the base clock,
below the boost clock the cores actually run at (a theoretical peak from it would be exceeded
by real kernels). So on x86-64 the clock is measured: every core runs a chain of dependent
register additions (one cycle each on every x86-64 core since the P6: the chain's length is a
cycle count) and clock = cycles / seconds. All cores run at once, so the clock is the all-core
one a multi-threaded GEMM sees.

The chain is eight bytes of machine code per addition, placed in an executable anonymous mapping
and called through ctypes (which releases the GIL, so the threads run in parallel). It uses
register-register additions: some cores fold chains of add-immediate at rename, which would
make the chain shorter than its length in cycles.
"""
import ctypes
import mmap
import platform
import threading
import time

CHAIN = 8  # dependent additions per loop iteration: the loop costs CHAIN cycles

# x86-64, System V ABI (argument in rdi): loop: 8 x `add rax, rdx`; `dec rdi`; `jnz loop`; `ret`.
_X86_64_CODE = (bytes.fromhex("4801d0") * CHAIN + bytes.fromhex("48ffcf")
                + bytes([0x75, (-(3 * CHAIN + 3 + 2)) & 0xFF]) + bytes.fromhex("c3"))


def supported():
    # type: () -> Optional[str]
    """None where the clock can be measured here, else why not."""
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64"):
        return "the clock loop is written for x86-64 only (this CPU: {})".format(machine)
    return None


class _ChainLoop(object):
    """The dependent-addition loop as a callable: `loop(iterations)` runs CHAIN * iterations
    cycles."""

    def __init__(self):
        # type: () -> None
        self._memory = mmap.mmap(-1, mmap.PAGESIZE,
                                 prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        self._memory.write(_X86_64_CODE)
        address = ctypes.addressof(ctypes.c_char.from_buffer(self._memory))
        self.call = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_uint64)(address)

    def seconds(self, iterations):
        # type: (int) -> float
        started = time.perf_counter()
        self.call(iterations)
        return time.perf_counter() - started


def measure_clock_hz(threads, seconds=0.3, repeats=3):
    # type: (int, float, int) -> float
    """The highest clock any of `threads` concurrently loaded cores ran at (Hz).

    Each thread calibrates its loop to about `seconds`, then keeps the best of `repeats` timings
    (interrupts and preemption only ever lengthen a timing)."""
    reason = supported()
    if reason:
        raise RuntimeError(reason)
    loop = _ChainLoop()
    iterations, elapsed = 1 << 16, 0.0
    while elapsed < 0.02:  # calibrate on one core until a timing is long enough to scale
        iterations *= 2
        elapsed = loop.seconds(iterations)
    iterations = max(1, int(iterations * seconds / elapsed))
    best = []  # type: List[float]
    lock = threading.Lock()

    def work():
        # type: () -> None
        fastest = min(loop.seconds(iterations) for _ in range(repeats))
        with lock:
            best.append(CHAIN * iterations / fastest)

    workers = [threading.Thread(target=work) for _ in range(max(1, threads))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return max(best)
