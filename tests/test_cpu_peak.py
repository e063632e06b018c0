"""The theoretical CPU peak (cores x clock x FLOP per cycle) and the measured peak's shapes."""
import platform

import pytest

from toolkit.device.measure import clock, cpu_peak
from toolkit.device.training import peak

ZEN4 = {"vendor_id": "AuthenticAMD", "cpu family": "25", "model": "17",
        "flags": "fpu avx2 fma avx512f avx512_bf16"}
SAPPHIRE_RAPIDS = {"vendor_id": "GenuineIntel", "cpu family": "6", "model": "143",
                   "flags": "avx2 fma avx512f avx512_bf16 amx_bf16"}
HASWELL = {"vendor_id": "GenuineIntel", "cpu family": "6", "model": "63", "flags": "avx avx2 fma"}
PI4 = {"CPU implementer": "0x41", "CPU part": "0xd08", "Features": "fp asimd crc32"}


@pytest.mark.parametrize(("cpuinfo", "name", "figures"), [
    (ZEN4, "AMD Zen 4", {"fp32": 32, "bf16": 64}),
    (dict(ZEN4, model="33"), "AMD Zen 3", {"fp32": 32}),
    (dict(ZEN4, **{"cpu family": "23", "model": "1"}), "AMD Zen/Zen+", {"fp32": 16}),
    (SAPPHIRE_RAPIDS, "GenuineIntel x86-64", {"fp32": 64, "bf16": 1024}),
    (HASWELL, "GenuineIntel x86-64", {"fp32": 32}),
    (PI4, "Arm Cortex-A72", {"fp32": 16}),
])
def test_flop_per_cycle_by_microarchitecture(cpuinfo, name, figures):
    found, per_cycle, source = cpu_peak.flop_per_cycle(cpuinfo)
    assert (found, per_cycle) == (name, figures) and source


def test_an_unknown_arm_core_has_no_figure_and_says_why():
    name, per_cycle, source = cpu_peak.flop_per_cycle({"CPU implementer": "0x61",
                                                       "CPU part": "0x022"})
    assert per_cycle == {} and "0x61" in source and "0x022" in source


def test_native_bf16_needs_the_isa_flag():
    assert cpu_peak.native_bf16(ZEN4) and cpu_peak.native_bf16(SAPPHIRE_RAPIDS)
    assert not cpu_peak.native_bf16(HASWELL) and not cpu_peak.native_bf16(PI4)


def _topology(root, cores):
    """A fake sysfs: logical CPU i sits on physical core cores[i]."""
    for cpu, core in enumerate(cores):
        base = root / f"cpu{cpu}" / "topology"
        base.mkdir(parents=True)
        (base / "physical_package_id").write_text("0\n")
        (base / "core_id").write_text(f"{core}\n")
    return str(root)


def test_smt_siblings_count_as_one_core(tmp_path):
    sysfs = _topology(tmp_path, [0, 0, 1, 1])
    assert cpu_peak.physical_cores([0, 1], sysfs)[0] == 1
    assert cpu_peak.physical_cores([0, 1, 2, 3], sysfs)[0] == 2
    count, source = cpu_peak.physical_cores([0, 1], str(tmp_path / "absent"))
    assert count == 2 and "SMT" in source


def test_cpufreq_maximum_is_the_clock_where_the_kernel_has_it(tmp_path):
    (tmp_path / "cpu0" / "cpufreq").mkdir(parents=True)
    (tmp_path / "cpu0" / "cpufreq" / "cpuinfo_max_freq").write_text("1500000\n")
    assert cpu_peak.clock_hz(1, PI4, str(tmp_path)) == (1.5e9, "cpufreq cpuinfo_max_freq")


@pytest.mark.skipif(clock.supported() is not None, reason="the clock loop is x86-64 code")
def test_measured_clock_is_a_plausible_cpu_clock():
    # Any x86-64 core of the last 20 years runs between 0.5 and 6.5 GHz.
    assert 0.5e9 < clock.measure_clock_hz(1, seconds=0.05) < 6.5e9


def test_theoretical_peak_is_the_product_of_its_terms():
    theory = cpu_peak.theoretical_peak(1, dict(HASWELL))
    if theory["flops"]:
        assert theory["flops"]["fp32"] == pytest.approx(theory["cores"] * theory["clock_hz"] * 32)
        assert theory["cores"] == 1 and theory["clock_source"]
    else:
        assert theory["reason"]
    assert cpu_peak.theoretical_peak(1, {"CPU implementer": "0x61"})["flops"] == {}


def test_peak_job_takes_the_best_of_squares_and_the_models_convolutions():
    job = {"kind": "peak", "coords": {"device": "cpu", "framework": "pytorch"},
           "settings": {"sizes": [64], "dtypes": ["fp32"], "threads": 1,
                        "conv_models": ["vgg11"], "conv_batches": [2]},
           "protocol": {"warmup_count": 1, "warmup_seconds": 0.0, "min_count": 2,
                        "min_seconds": 0.01, "max_seconds": 2.0, "max_cv": 1.0}}
    result = peak.run_torch(job)
    records = {name: value for name, value, _ in result["records"]}
    conv = {name: value for name, value in records.items() if name.startswith("conv_flops_fp32_")}
    # VGG-11 at 32x32: 8 convolutions, the last two of the same shape
    assert len(conv) == 7
    assert {"conv_flops_fp32_2x512x512x2", "conv_flops_fp32_2x3x64x32"} <= set(conv)
    best = max([records["matmul_flops_fp32_64"], *conv.values()])
    assert records["peak_flops_fp32"] == best
    assert result["settings"]["best_shapes"]["fp32"]
    theory = result["settings"]["theoretical"]
    if "reason" not in theory:
        assert records["peak_flops_fp32_theoretical"] > 0 and theory["clock_source"]


def test_conv_shape_flops_leave_out_the_padding():
    assert peak.shape_flops(("conv", 1, 1, 1, 2)) == 2 * 16  # 4 outputs x 4 taps on the input
    assert peak.shape_flops(("matmul", 10)) == 2000


def test_platform_of_the_clock_loop():
    assert (clock.supported() is None) == (platform.machine().lower() in ("x86_64", "amd64"))
