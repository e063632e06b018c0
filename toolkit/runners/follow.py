"""Live progress of a running job: the newest line of its log file, read from a thread.

Jobs write progress to their log (a NeuralScale search's epochs, accuracy training's loss and
accuracy); both runners fill that file while the job runs, so following it shows a user what an
hour-long preparation job is doing without the host knowing what kind of job it is.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

# Only the end of a large burst of output matters: the newest line.
_READ_LIMIT = 64 * 1024


class LogFollower:
    """`with LogFollower(path, show):` calls show(line) with each newest complete line."""

    def __init__(self, path: Path, show: Callable[[str], None], interval: float = 1.0) -> None:
        self.path, self.show, self.interval = path, show, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name=f"follow {path.name}",
                                        daemon=True)
        self._position = 0

    def __enter__(self) -> LogFollower:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()

    def _follow(self) -> None:
        while not self._stop.wait(self.interval):
            line = self.newest_line()
            if line:
                self.show(line)

    def newest_line(self) -> str:
        """The last complete, non-blank line written since the previous call ('' if none)."""
        try:
            size = self.path.stat().st_size
        except OSError:
            return ""
        if size < self._position:  # the file was rewritten (a runner copying a whole log)
            self._position = 0
        if size == self._position:
            return ""
        start = max(self._position, size - _READ_LIMIT)
        with self.path.open("rb") as handle:
            handle.seek(start)
            data = handle.read(size - start)
        end = data.rfind(b"\n")
        if end < 0:
            return ""  # a line still being written
        self._position = start + end + 1
        lines = [line.strip() for line in data[:end].decode(errors="replace").splitlines()]
        return next((line for line in reversed(lines) if line), "")
