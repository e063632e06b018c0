"""A second Docker engine on this machine, for tests that need another device or a clean engine."""
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SecondEngine:
    """A dockerd of our own: its data root, exec root (and so its own containerd), socket and
    loopback TCP port; nothing it does touches the default engine."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, free_port()
        self.url = f"tcp://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        import docker

        command = ["dockerd", "--data-root", f"{self.root}/data", "--exec-root",
                   f"{self.root}/exec", "--pidfile", f"{self.root}/docker.pid",
                   "--host", f"unix://{self.root}/docker.sock", "--host", self.url,
                   "--bridge=none", "--iptables=false",
                   "--containerd-namespace", "edgerepro-second",
                   "--containerd-plugins-namespace", "edgerepro-second-plugins"]
        self._forget_dead_containerd()
        log = (self.root / "dockerd.log").open("a")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                docker.DockerClient(base_url=self.url, timeout=5).ping()
                return
            except Exception:  # noqa: BLE001 - not up yet
                if self.process.poll() is not None:
                    break
                time.sleep(0.5)
        tail = (self.root / "dockerd.log").read_text()[-2000:]
        raise RuntimeError(f"the second dockerd did not answer at {self.url}:\n{tail}")

    def _forget_dead_containerd(self) -> None:
        """A killed daemon leaves its containerd's pid file; dockerd takes any live pid there (a
        zombie not yet reaped, a recycled pid) for its containerd and waits for it in vain."""
        pidfile = self.root / "exec" / "containerd" / "containerd.pid"
        try:
            pid = int(pidfile.read_text().strip())
            ours = str(self.root).encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            ours = False
        if not ours:
            pidfile.unlink(missing_ok=True)

    def kill(self) -> None:
        """As a device dropping off the network: no chance to clean up."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()

    def remove(self) -> None:
        """Stop it, end what it left (container shims of a killed daemon, found by our root in
        their command line), unmount what it mounted below the root, delete the root."""
        self.stop()
        marker = str(self.root).encode()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                try:
                    if marker in (entry / "cmdline").read_bytes():
                        os.kill(int(entry.name), signal.SIGKILL)
                except (OSError, ProcessLookupError):
                    continue
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text()
                  .splitlines() if line.split()[4].startswith(str(self.root))]
        for mount in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def second_engine() -> Iterator[SecondEngine]:
    """A fresh engine (empty data root) for the duration; skipped where it cannot start."""
    if os.geteuid() != 0 or shutil.which("dockerd") is None:
        pytest.skip("starting a second dockerd needs root and dockerd")
    # A short root: the engine's unix socket path must stay under 108 bytes.
    engine = SecondEngine(Path(tempfile.mkdtemp(prefix="edgerepro-second-")))
    try:
        engine.start()
        yield engine
    finally:
        engine.remove()
