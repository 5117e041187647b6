"""asyncgate's services as real subprocesses (``python -m services.cli edge|executor|projector``)
that fault-injection tests can SIGKILL, SIGTERM and start again, each logging to a file."""

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final, Self

import httpx

from services.common.nats_server import free_port
from services.common.settings import Settings
from services.provision import provision_nats

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
SERVICES: Final = ("edge", "executor", "projector")
# What FastStream 0.7.8 logs once FastStream.run() has run the on_startup hooks (the services
# connect and declare the stream there) and started the broker's subscribers.
FASTSTREAM_STARTED: Final = "FastStream app started successfully!"

try:
    _prctl: Callable[..., int] | None = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: children outlive a killed pytest
    _prctl = None


def die_with_parent() -> None:
    """``preexec_fn`` for children: SIGKILL them when the process that forked them dies.

    Teardown stops children normally; this covers pytest itself being killed (a CI timeout,
    pytest-timeout's thread method). Linux ties it to the forking *thread*: start children from
    the main thread, not from ``asyncio.to_thread``.
    """
    if _prctl is not None:
        _prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL; nothing that allocates between fork and exec


class ChildProcess:
    """A child process with its output appended to one log file (a restart appends too).

    ``with child:`` starts it unless it runs already, and stops it at the end in any case.
    """

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log_start = 0

    def _spawn(
        self, command: list[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
    ) -> None:
        if self.running:
            raise RuntimeError(f"{self.log_path.stem} is already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._log_start = log.tell()
            self._process = subprocess.Popen(
                command,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,  # noqa: PLW1509 (one prctl call, allocation-free)
            )

    def start(self) -> None:
        """Start the process (subclasses say how)."""
        raise NotImplementedError

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int:
        """The process id of the current run (for /proc probes)."""
        if self._process is None or not self.running:
            raise RuntimeError(f"{self.log_path.stem} is not running")
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """The exit status of the last run; None while running or before the first start."""
        return None if self._process is None else self._process.poll()

    def memory_bytes(self, *, peak: bool = False) -> int:
        """Its resident memory now (or the most it ever had, ``peak``), from /proc."""
        if self._process is None or not self.running:
            raise RuntimeError(f"{self.log_path.stem} is not running")
        field = "VmHWM:" if peak else "VmRSS:"
        for line in Path(f"/proc/{self._process.pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no {field} in /proc/{self._process.pid}/status")

    def kill(self) -> None:
        """SIGKILL, as a crash or a pulled plug ends it, and wait until it is gone."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def signal(self, signum: signal.Signals) -> None:
        """Send ``signum`` without waiting (SIGSTOP freezes it, SIGCONT thaws it)."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signum)

    def wait_exit(self, timeout_s: float) -> int:
        """Wait for the process to end by itself; its exit status (TimeoutError if it runs on)."""
        if self._process is None:
            raise RuntimeError(f"{self.log_path.stem} was never started")
        try:
            return self._process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{self.log_path.stem} still runs after {timeout_s:g} s") from None

    def terminate(self, timeout_s: float = 15.0) -> int:
        """SIGTERM, as an operator stops it; its exit status. If it is not gone within
        ``timeout_s`` it is SIGKILLed and TimeoutError raised, with the log's end."""
        self.signal(signal.SIGTERM)
        self.signal(signal.SIGCONT)  # a frozen (SIGSTOPped) process acts on SIGTERM only then
        try:
            return self.wait_exit(timeout_s)
        except TimeoutError:
            self.kill()
            raise TimeoutError(f"ignored SIGTERM for {timeout_s:g} s:\n{self.log_tail()}") from None

    def stop(self, timeout_s: float = 15.0) -> None:
        """Like ``terminate()`` but never raises: for teardown. A no-op if not running."""
        if self.running:
            with contextlib.suppress(TimeoutError):
                self.terminate(timeout_s)

    def log_text(self, *, this_run: bool = False) -> str:
        """The log, every run of it (or only since the last start)."""
        if not self.log_path.exists():
            return ""
        data = self.log_path.read_bytes()
        return (data[self._log_start :] if this_run else data).decode(errors="replace")

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the log, for error messages."""
        return self.log_text()[-chars:]

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def service_env(asyncgate: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any ASYNCGATE_* variable, plus ``asyncgate``, so
    what the developer's shell exports cannot leak into a test."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ASYNCGATE_")}
    return env | {"PYTHONUNBUFFERED": "1"} | dict(asyncgate)


class ServiceProcess(ChildProcess):
    """One asyncgate service (edge, executor or projector) as a subprocess of its own, logging
    to ``<log_dir>/<name>.log`` (``name`` defaults to the service; give a second executor
    another name)."""

    def __init__(
        self, service: str, env: Mapping[str, str], log_dir: Path, *, name: str | None = None
    ) -> None:
        if service not in SERVICES:
            raise ValueError(f"unknown service {service!r}; expected one of {SERVICES}")
        if service == "edge" and "ASYNCGATE_HTTP_PORT" not in env:
            raise ValueError("the edge needs ASYNCGATE_HTTP_PORT (a free port)")
        self.service = service
        self.name = name or service
        self.env = dict(env)
        super().__init__(log_dir / f"{self.name}.log")

    @property
    def base_url(self) -> str:
        """The edge's HTTP address."""
        return f"http://127.0.0.1:{self.env['ASYNCGATE_HTTP_PORT']}"

    def start(self) -> None:
        """Start the service (returns at once; see ``wait_ready``)."""
        command = [sys.executable, "-m", "services.cli", self.service]
        self._spawn(command, cwd=REPO_ROOT, env=service_env(self.env))

    def restart(self) -> None:
        """Stop it if running (SIGTERM), then start it again, appending to the same log."""
        self.stop()
        self.start()

    async def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Wait until the service serves: the edge's /readyz answers 200 (NATS connected, stream
        and bucket there); the others have logged FastStream's start-up line since this start.
        Fails at once, with the log's end, if the process exits meanwhile."""
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(
            base_url=self.base_url if self.service == "edge" else ""
        ) as http:
            while not await self._ready(http):
                if not self.running:
                    raise RuntimeError(
                        f"{self.name} exited with {self.returncode} before it was ready:\n"
                        f"{self.log_tail()}"
                    )
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{self.name} not ready in {timeout_s:g} s:\n{self.log_tail()}"
                    )
                await asyncio.sleep(0.05)

    async def _ready(self, http: httpx.AsyncClient) -> bool:
        if self.service != "edge":
            return FASTSTREAM_STARTED in self.log_text(this_run=True)
        try:
            return (await http.get("/readyz", timeout=2.0)).status_code == 200
        except httpx.HTTPError:
            return False


class ServiceStack:
    """An edge, an executor and a projector for one NATS URL (or several, comma-separated).

    The environment: a free HTTP port, per-user limits off, a short shutdown grace, data under
    ``log_dir``, then ``env`` on top (e.g. ``ASYNCGATE_EXECUTOR_ACK_WAIT_S``; a cluster test
    sets ``ASYNCGATE_REPLICAS=3`` itself). ``async with`` starts every process and waits until
    each is ready; ``stop()`` (also at the block's end) leaves none behind.
    """

    def __init__(self, nats_url: str, log_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.log_dir = log_dir
        self.env: dict[str, str] = {
            "ASYNCGATE_NATS_URL": nats_url,
            "ASYNCGATE_HTTP_PORT": str(free_port()),
            "ASYNCGATE_MAX_ACTIVE_PER_USER": "0",
            "ASYNCGATE_MIN_START_INTERVAL_S": "0",
            "ASYNCGATE_SHUTDOWN_GRACE_S": "2",
            "ASYNCGATE_DATA_DIR": str(log_dir / "asyncgate-data"),
        } | dict(env or {})
        self.processes: list[ServiceProcess] = []
        self.edge = self.add("edge")
        self.executor = self.add("executor")
        self.projector = self.add("projector")

    @property
    def base_url(self) -> str:
        """The edge's HTTP address."""
        return self.edge.base_url

    def add(
        self, service: str, *, name: str | None = None, env: Mapping[str, str] | None = None
    ) -> ServiceProcess:
        """One more (unstarted) process with the stack's environment plus ``env``, e.g. a second
        executor; ``stop()`` stops it with the rest."""
        process = ServiceProcess(service, self.env | dict(env or {}), self.log_dir, name=name)
        self.processes.append(process)
        return process

    def start(self) -> None:
        """Start every process that is not running (without waiting; see ``wait_ready``)."""
        for process in self.processes:
            if not process.running:
                process.start()

    async def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Wait until every running process is ready."""
        running = [process for process in self.processes if process.running]
        await asyncio.gather(*(process.wait_ready(timeout_s) for process in running))

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM every process at once, wait up to ``timeout_s`` in all, SIGKILL the rest."""
        for process in self.processes:
            process.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for process in self.processes:
            process.stop(max(0.1, deadline - time.monotonic()))

    async def provision(self) -> None:
        """Provision NATS for the stack's settings, as an operator does before starting it."""
        await provision_nats(Settings.from_env(self.env))

    async def __aenter__(self) -> Self:
        try:
            await self.provision()
            self.start()
            await self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop()
