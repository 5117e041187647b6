"""The peer's processes: the system's redis-server (broker and result backend), a Celery worker
with a prefork pool of 2, and the Starlette endpoint under uvicorn, each a process of its own
logging to a file, all stopped at the end whatever ends the run."""

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx
import redis.asyncio as aioredis

from bench.probes import descendants
from services.common.nats_server import free_port, port_is_free
from tests.support.processes import REPO_ROOT, ChildProcess

INSTALL_HINT: Final = "redis-server is not installed: `apt-get install redis-server` (Debian)"
POOL_PROCESSES: Final = 2
READY_POLL_S: Final = 0.05


def redis_server_binary() -> str | None:
    """The system's redis-server, or None when it is not installed."""
    return shutil.which("redis-server")


class RedisServer(ChildProcess):
    """redis-server on a free port with its files under ``directory``, no persistence (the
    peer's figures are its best case)."""

    def __init__(self, directory: Path, binary: str) -> None:
        super().__init__(directory / "redis.log")
        self.directory, self.binary, self.port = directory, binary, free_port()

    @property
    def url(self) -> str:
        """The client URL."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 15.0) -> None:
        """Start it; return once it listens."""
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--dir", str(self.directory), "--save", "", "--appendonly", "no"]
        self._spawn(command)
        deadline = time.monotonic() + timeout_s
        while port_is_free(self.port):
            if not self.running or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not listen:\n{self.log_tail()}")
            time.sleep(READY_POLL_S)


class PythonProcess(ChildProcess):
    """``python -m <args>`` from the repository root with BENCH_REDIS_URL set."""

    def __init__(self, log_path: Path, args: list[str], env: Mapping[str, str]) -> None:
        super().__init__(log_path)
        self.args, self.env = args, dict(env)

    def start(self) -> None:
        """Start it (returns at once)."""
        env = os.environ | {"PYTHONUNBUFFERED": "1"} | self.env
        self._spawn([sys.executable, "-m", *self.args], cwd=REPO_ROOT, env=env)


class CeleryWorker(PythonProcess):
    """A Celery worker whose pool processes are stopped with it."""

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM (Celery's warm shutdown), then SIGKILL any pool process left behind."""
        pool = descendants(self.pid)[1:] if self.running else []
        super().stop(timeout_s)
        for pid in pool:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # only pids this worker forked


@dataclass
class CeleryPeer:
    """The running peer."""

    redis: RedisServer
    worker: CeleryWorker
    web: PythonProcess
    web_port: int

    @property
    def base_url(self) -> str:
        """The endpoint's HTTP address."""
        return f"http://127.0.0.1:{self.web_port}"

    def pids(self) -> dict[str, list[int]]:
        """Each process group the bench counts CPU for (the worker with its pool)."""
        return {
            "web": [self.web.pid],
            "celery worker": descendants(self.worker.pid),
            "redis-server": [self.redis.pid],
        }


async def _wait_web(peer: CeleryPeer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=peer.base_url, trust_env=False) as http:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get("/healthz", timeout=2.0)).status_code == 200:
                    return
            if not peer.web.running or time.monotonic() > deadline:
                raise RuntimeError(f"the peer's endpoint did not serve:\n{peer.web.log_tail()}")
            await asyncio.sleep(READY_POLL_S)


async def _wait_worker(peer: CeleryPeer, timeout_s: float) -> None:
    """Until the worker has run one task (its pool is up and consuming)."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=peer.base_url, trust_env=False) as http:
        body = {"query": "{ __typename }"}
        task_id = (await http.post("/submit", json=body, timeout=10.0)).json()["id"]
    client = aioredis.Redis.from_url(peer.redis.url)
    try:
        while not await client.exists(f"celery-task-meta-{task_id}"):
            if not peer.worker.running or time.monotonic() > deadline:
                raise RuntimeError(f"the Celery worker ran no task:\n{peer.worker.log_tail()}")
            await asyncio.sleep(READY_POLL_S)
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def celery_peer(directory: Path, redis_binary: str) -> AsyncIterator[CeleryPeer]:
    """redis-server, the worker and the endpoint under ``directory``, stopped at the end."""
    redis_server = RedisServer(directory / "redis", redis_binary)
    redis_server.start()
    env = {"BENCH_REDIS_URL": redis_server.url}
    worker_args = ["celery", "-A", "bench.peers.celery_peer.tasks", "worker", "--pool"]
    worker_args += ["prefork", "-c", str(POOL_PROCESSES), "--loglevel", "WARNING"]
    worker_args += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    web_port = free_port()
    web_args = ["uvicorn", "bench.peers.celery_peer.web:app", "--host", "127.0.0.1"]
    web_args += ["--port", str(web_port), "--no-access-log", "--log-level", "warning"]
    worker = CeleryWorker(directory / "celery-worker.log", worker_args, env)
    web = PythonProcess(directory / "celery-web.log", web_args, env)
    peer = CeleryPeer(redis_server, worker, web, web_port)
    try:
        worker.start()
        web.start()
        await _wait_web(peer, 60.0)
        await _wait_worker(peer, 60.0)
        yield peer
    finally:
        for process in (web, worker, redis_server):
            process.stop()
