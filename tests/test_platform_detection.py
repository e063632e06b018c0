"""Which platform of the version matrix this machine is: `build` and `run` use its images."""
import pytest

from toolkit.images import matrix


@pytest.mark.parametrize("text, release", [
    ("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64", "r35.4.1"),
    ("# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t186ref", "r32.7.1"),
    ("# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic", "r36.4.0"),
    ("garbage", None),
])
def test_a_jetson_knows_its_l4t_release(text, release):
    from toolkit.environment import l4t_release

    assert l4t_release(text) == release


def test_a_jetson_builds_and_runs_its_own_platform(tmp_path):
    """`invoke build` and `run` default to this machine's platform: its L4T release on a
    Jetson (not amd64); a release the matrix lacks is one line naming the valid ones."""
    from toolkit.environment import local_platform
    from toolkit.errors import UserError

    known = list(matrix.load().platforms)
    release = tmp_path / "nv_tegra_release"
    release.write_text("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref\n")
    assert local_platform(known, release) == "l4t-r35.4.1"
    release.write_text("# R35 (release), REVISION: 3.1, GCID: 32827747, BOARD: t186ref\n")
    with pytest.raises(UserError, match=r"L4T r35.3.1, which the version matrix does not pin; "
                                        r"valid: l4t-r32.7.1, l4t-r35.4.1, l4t-r36.4.0"):
        local_platform(known, release)
    assert local_platform(known, tmp_path / "absent") == "amd64"  # this x86-64 machine
