"""What every launcher shares: a private server process on 127.0.0.1, started in a temporary
directory of its own, waited for until it answers, and stopped with its directory removed.

A launcher subclasses ``ServerProcess``, says how it knows the server answers (``answers``),
and calls ``launch``. Everything the process prints goes to a log file in its directory, never
to a pipe that nobody reads (which would block the server once full); a server that exits or
never answers raises ``ServerUnavailable`` quoting the end of that log, since the directory is
gone by the time anyone reads the message. ``start_or_unavailable`` turns that into
``conftest.unavailable``: a failure under CI, a skip elsewhere.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, TypeVar

from conftest import unavailable
from lockstep.demo.localpg import free_port

__all__ = [
    "ServerProcess",
    "ServerUnavailable",
    "free_port",
    "log_tail",
    "start_or_unavailable",
    "temp_dir",
]

S = TypeVar("S")
_POLL_S = 0.05
_STOP_TIMEOUT_S = 10.0
_LOG_TAIL_CHARS = 2000


class ServerUnavailable(RuntimeError):
    """A server could not be started here; the message says why."""


def log_tail(log: Path) -> str:
    """The end of a log, for an error message that outlives the directory the log was in."""
    return log.read_text(errors="replace")[-_LOG_TAIL_CHARS:]


def temp_dir(name: str) -> Path:
    """A fresh directory for one server, named after it so a leftover one is recognisable."""
    return Path(tempfile.mkdtemp(prefix=f"lockstep-{name}-"))


@dataclass
class ServerProcess(ABC):
    """A server process we started, with the directory that holds its files and its log."""

    directory: Path
    argv: Sequence[str]
    process: subprocess.Popen[bytes] = field(init=False, repr=False)

    # What messages call the server, and the error its launcher's callers catch.
    name: ClassVar[str] = "server"
    error: ClassVar[type[ServerUnavailable]] = ServerUnavailable

    @property
    def log(self) -> Path:
        return self.directory / f"{self.name}.log"

    @abstractmethod
    def answers(self) -> bool:
        """Whether the server serves requests yet; a refused connection is False, not an error."""

    def launch(self, timeout_s: float = 30.0) -> None:
        """Start ``argv`` and return once the server answers. On failure the server is stopped
        (its directory removed) and ``error`` raised."""
        try:
            with self.log.open("ab") as out:
                self.process = subprocess.Popen(
                    self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
                )
        except OSError as exc:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise self.error(f"{self.name} could not be started: {exc}") from exc
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise self.error(
                    f"{self.name} exited with {self.process.returncode}: {log_tail(self.log)}"
                )
            if self.answers():
                return
            time.sleep(_POLL_S)
        raise self.error(f"{self.name} did not answer within {timeout_s}s: {log_tail(self.log)}")

    def kill(self) -> None:
        """End the process abruptly, as a crash would; its directory stays for ``launch``."""
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        """Terminate the process (killed if it does not exit in time) and remove its directory.
        Stopping a stopped server does nothing more."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


def start_or_unavailable(start: Callable[[], S]) -> S:
    """``start()``, with a server that cannot start here turned into ``conftest.unavailable``."""
    try:
        return start()
    except ServerUnavailable as exc:
        unavailable(str(exc))
        raise
