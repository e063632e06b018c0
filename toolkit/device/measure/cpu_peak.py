"""The CPU's theoretical FLOP peak: cores x clock x FLOP per cycle, each term with its source.

The measured matmul peak (training/peak.py) is what kernels reach; this is the bound they
cannot pass. A measured peak above it means the measurement is wrong (or this table is), and
the bench fails on it.

FLOP per cycle and core = FMA units x vector lanes x 2 (an FMA is two FLOPs), from the vendors'
optimisation guides and microarchitecture disclosures, per microarchitecture:
- AMD Zen, Zen+ (family 17h, models < 30h): two 128-bit FMA pipes: fp32 16.
- AMD Zen 2, Zen 3 (17h from 30h; 19h outside the Zen 4 ranges): two 256-bit FMA pipes: fp32 32.
- AMD Zen 4 (19h models 10h-1Fh, 60h-7Fh, A0h-AFh): AVX-512 on the same two 256-bit pipes, each
  512-bit instruction in two halves: fp32 32; VDPBF16PS does two bf16 products per fp32 lane:
  bf16 64.
- AMD Zen 5 (1Ah): a 512-bit datapath on desktop and server parts: fp32 64, bf16 128 (mobile
  parts keep 256 bits and reach half: an upper bound is what the check needs).
- Intel and other x86-64, from the ISA flags, assuming two FMA units of the widest vector
  (Xeon Gold/Platinum and client cores with AVX2; parts with one 512-bit FMA unit reach half):
  avx512f 64, avx2 + fma 32, avx 16 (separate multiply and add), else 8; avx512_bf16 doubles the
  fp32 figure for bf16; AMX (amx_bf16) is 1024 bf16 FLOP per cycle (one 16x32 tile multiply).
- Arm cores of the boards in the matrix: Cortex-A57 (TX2), Cortex-A72 (Raspberry Pi 4),
  Carmel (Xavier), Denver 2 (TX2), Cortex-A78AE (Orin): at most two 128-bit FMA pipes: fp32 16.
"""
import os
import re

# (vendor_id, family): [(first model, last model, name, {dtype: FLOP per cycle})]
_X86_TABLE = {
    ("AuthenticAMD", 0x17): [(0x00, 0x2F, "AMD Zen/Zen+", {"fp32": 16}),
                             (0x30, 0xFF, "AMD Zen 2", {"fp32": 32})],
    ("AuthenticAMD", 0x19): [(0x10, 0x1F, "AMD Zen 4", {"fp32": 32, "bf16": 64}),
                             (0x60, 0x7F, "AMD Zen 4", {"fp32": 32, "bf16": 64}),
                             (0xA0, 0xAF, "AMD Zen 4", {"fp32": 32, "bf16": 64}),
                             (0x00, 0xFF, "AMD Zen 3", {"fp32": 32})],
    ("AuthenticAMD", 0x1A): [(0x00, 0xFF, "AMD Zen 5", {"fp32": 64, "bf16": 128})],
}
# ("CPU implementer", "CPU part") -> name; every one: two 128-bit FMA pipes at most.
_ARM_CORES = {("0x41", "0xd07"): "Arm Cortex-A57", ("0x41", "0xd08"): "Arm Cortex-A72",
              ("0x41", "0xd41"): "Arm Cortex-A78", ("0x41", "0xd42"): "Arm Cortex-A78AE",
              ("0x4e", "0x003"): "NVIDIA Denver 2", ("0x4e", "0x004"): "NVIDIA Carmel"}
_ARM_FLOP_PER_CYCLE = {"fp32": 16}
TABLE_SOURCE = "vendor optimisation guides: FMA units x vector lanes x 2"


def read_cpuinfo(path="/proc/cpuinfo"):
    # type: (str) -> Dict[str, str]
    """The first processor's fields of /proc/cpuinfo (empty where it is unreadable)."""
    fields = {}  # type: Dict[str, str]
    try:
        with open(path) as handle:
            for line in handle:
                if not line.strip():
                    if fields:
                        break
                    continue
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_flags(cpuinfo):
    # type: (Dict[str, str]) -> Set[str]
    """The ISA flags (x86 "flags", Arm "Features")."""
    return set((cpuinfo.get("flags") or cpuinfo.get("Features") or "").split())


def native_bf16(cpuinfo):
    # type: (Dict[str, str]) -> bool
    """Whether the CPU multiplies bf16 in hardware (x86 AVX512-BF16 or AMX, Arm BF16)."""
    return bool(cpu_flags(cpuinfo) & {"avx512_bf16", "amx_bf16", "bf16"})


def flop_per_cycle(cpuinfo):
    # type: (Dict[str, str]) -> Tuple[str, Dict[str, int], str]
    """(microarchitecture, {dtype: FLOP per cycle and core}, source); an empty dict where this
    CPU is not known."""
    flags = cpu_flags(cpuinfo)
    vendor = cpuinfo.get("vendor_id", "")
    if vendor:
        try:
            family, model = int(cpuinfo.get("cpu family", "")), int(cpuinfo.get("model", ""))
        except ValueError:
            family, model = -1, -1
        for low, high, name, figures in _X86_TABLE.get((vendor, family), []):
            if low <= model <= high:
                return name, dict(figures), "{} (family {:X}h, model {:X}h)".format(
                    TABLE_SOURCE, family, model)
        return _from_flags(flags, vendor)
    core = (cpuinfo.get("CPU implementer", ""), cpuinfo.get("CPU part", ""))
    if core in _ARM_CORES:
        return _ARM_CORES[core], dict(_ARM_FLOP_PER_CYCLE), TABLE_SOURCE
    return "unknown", {}, "not in the table (implementer {}, part {})".format(*core)


def _from_flags(flags, vendor):
    # type: (Set[str], str) -> Tuple[str, Dict[str, int], str]
    if "avx512f" in flags:
        fp32 = 64
    elif {"avx2", "fma"} <= flags:
        fp32 = 32
    elif "avx" in flags:
        fp32 = 16
    else:
        fp32 = 8
    figures = {"fp32": fp32}
    if "amx_bf16" in flags:
        figures["bf16"] = 1024
    elif "avx512_bf16" in flags:
        figures["bf16"] = 2 * fp32
    return ("{} x86-64".format(vendor or "unknown"), figures,
            "ISA flags, assuming two FMA units of the widest vector (an upper bound)")


def physical_cores(cpus, sysfs="/sys/devices/system/cpu"):
    # type: (Iterable[int], str) -> Tuple[int, str]
    """Distinct physical cores among these logical CPUs (SMT siblings share one core's FMA
    units), and where the count came from."""
    cpus = sorted(cpus)
    cores = set()
    for cpu in cpus:
        base = os.path.join(sysfs, "cpu{}".format(cpu), "topology")
        try:
            with open(os.path.join(base, "physical_package_id")) as package, \
                    open(os.path.join(base, "core_id")) as core:
                cores.add((package.read().strip(), core.read().strip()))
        except OSError:
            return len(cpus), "logical CPUs (no sysfs topology: SMT siblings not told apart)"
    return len(cores), "physical cores of the allowed CPUs (sysfs topology)"


def clock_hz(threads, cpuinfo, sysfs="/sys/devices/system/cpu"):
    # type: (int, Dict[str, str], str) -> Tuple[Optional[float], str]
    """The clock term: cpufreq's maximum where the kernel exposes it (boards, bare metal),
    else measured under load (x86-64), else the nominal MHz (which boost may exceed)."""
    try:
        with open(os.path.join(sysfs, "cpu0", "cpufreq", "cpuinfo_max_freq")) as handle:
            return int(handle.read().strip()) * 1e3, "cpufreq cpuinfo_max_freq"
    except (OSError, ValueError):
        pass
    from toolkit.device.measure import clock

    if clock.supported() is None:
        hz = clock.measure_clock_hz(threads)
        return hz, "measured: {} dependent additions per loop on {} loaded core(s)".format(
            clock.CHAIN, threads)
    mhz = re.match(r"[0-9.]+", cpuinfo.get("cpu MHz", ""))
    if mhz:
        return float(mhz.group(0)) * 1e6, "/proc/cpuinfo 'cpu MHz' (nominal; boost may exceed it)"
    return None, clock.supported() or "no clock source"


def theoretical_peak(threads, cpuinfo=None):
    # type: (int, Optional[Dict[str, str]]) -> Dict[str, Any]
    """{"flops": {dtype: FLOP/s}, "cores", "clock_hz", "flop_per_cycle", "microarchitecture",
    and the source of each term}; "flops" is empty (with "reason") where a term is unknown."""
    cpuinfo = read_cpuinfo() if cpuinfo is None else cpuinfo
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else list(range(os.cpu_count() or 1))
    cores, cores_source = physical_cores(allowed[:max(1, threads)] if threads else allowed)
    name, per_cycle, per_cycle_source = flop_per_cycle(cpuinfo)
    hz, clock_source = clock_hz(min(threads or len(allowed), len(allowed)), cpuinfo)
    result = {"cores": cores, "cores_source": cores_source, "clock_hz": hz,
              "clock_source": clock_source, "microarchitecture": name,
              "flop_per_cycle": per_cycle, "flop_per_cycle_source": per_cycle_source,
              "flops": {}}  # type: Dict[str, Any]
    if hz is None or not per_cycle:
        result["reason"] = clock_source if hz is None else per_cycle_source
        return result
    result["flops"] = {dtype: cores * hz * figure for dtype, figure in per_cycle.items()}
    return result
