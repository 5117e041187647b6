"""``asyncgate up``: the whole stack as separate processes under one supervisor.

Starts an embedded nats-server (unless ASYNCGATE_NATS_URL names one), provisions it, then the
edge, an executor, the projector and (with ASYNCGATE_CALLBACK_SIGNING_KEY set) the callbacks
service, each with labelled output. Ctrl-C stops them in an order
that loses nothing: the edge stops taking requests, the executor finishes or hands back what it
is running, the projector folds the last events, and NATS goes last.
"""

import asyncio
import contextlib
import fcntl
import os
import signal
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

from examples.actions import ACTIONS_FILE
from services.common.nats_server import (
    free_port,
    nats_server_command,
    port_is_free,
    record_nats_url,
    write_sync_always_config,
)
from services.common.settings import Settings

SERVICES = ("projector", "callbacks", "executor", "edge")
STOP_ORDER = ("edge", "executor", "projector", "callbacks", "demo", "nats")
DEFAULT_NATS_PORT = 4222
COLORS = {
    "demo": 34,
    "nats": 35,
    "provision": 35,
    "edge": 36,
    "executor": 33,
    "projector": 32,
    "callbacks": 31,
    "up": 1,
}
READY_TIMEOUT_S = 30.0


LOCK_FILE = "up.lock"


class DataDirInUseError(RuntimeError):
    """Another ``asyncgate up`` runs on the same data directory."""


@contextlib.contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[IO[str]]:
    """Hold the data directory for this ``asyncgate up`` alone, for as long as the block runs.

    Two NATS servers on one store would corrupt it. The lock is the operating system's
    (``flock``), so it goes away with the process, even after a SIGKILL: never a stale lock.
    The file says who holds it.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / LOCK_FILE).open("a+", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise DataDirInUseError(
                f"{data_dir} is in use by another asyncgate up ({holder}); stop that one first, "
                "or give this one its own ASYNCGATE_DATA_DIR"
            ) from None
        describe_holder(lock, f"pid {os.getpid()}")
        yield lock


def describe_holder(lock: IO[str], description: str) -> None:
    """Say in the lock file who holds it (read by a second ``asyncgate up``)."""
    lock.seek(0)
    lock.truncate()
    lock.write(description + "\n")
    lock.flush()


def say(label: str, line: str) -> None:
    """Print one labelled line of the stack's output."""
    color = COLORS.get(label, 0) if sys.stdout.isatty() else None
    prefix = f"{label:>9} |"
    if color is not None:
        prefix = f"\033[{color}m{prefix}\033[0m"
    print(f"{prefix} {line}", flush=True)  # noqa: T201 (the supervisor's job is to print)


async def _relay(label: str, stream: asyncio.StreamReader) -> None:
    while line := await stream.readline():
        say(label, line.decode(errors="replace").rstrip())


async def _spawn(
    label: str, command: list[str], env: Mapping[str, str]
) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        *command,
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        # Own process group: Ctrl-C reaches only the supervisor, which then stops the children
        # in order instead of all at once.
        process_group=0,
    )
    if process.stdout is not None:
        asyncio.get_running_loop().create_task(_relay(label, process.stdout))
    return process


async def _wait_for_port(port: int, host: str, timeout_s: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if not port_is_free(port, host):
            return True
        await asyncio.sleep(0.05)
    return False


async def _stop(label: str, process: asyncio.subprocess.Process, grace_s: float) -> None:
    if process.returncode is not None:
        return
    say("up", f"stopping {label}")
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), grace_s)
    except TimeoutError:
        say("up", f"{label} did not stop within {grace_s:g} s; killing it")
        process.kill()
        await process.wait()


async def _start_embedded_nats(
    settings: Settings,
    env: dict[str, str],
    stack: contextlib.ExitStack,
    processes: dict[str, asyncio.subprocess.Process],
) -> bool:
    """Start nats-server on the data directory (held for this ``up`` alone), set its URL in
    ``env`` and record it for ``asyncgate ops``; False if it did not start."""
    lock = stack.enter_context(data_dir_lock(settings.data_dir))
    port = DEFAULT_NATS_PORT if port_is_free(DEFAULT_NATS_PORT) else free_port()
    store = Path(settings.data_dir, "nats").resolve()  # noqa: ASYNC240 (once, at start)
    store.mkdir(parents=True, exist_ok=True)
    config = write_sync_always_config(store.parent / "nats-server.conf")
    processes["nats"] = await _spawn(
        "nats", nats_server_command(store_dir=store, port=port, config_file=config), env
    )
    if not await _wait_for_port(port, "127.0.0.1", READY_TIMEOUT_S):
        say("up", "nats-server did not start")
        return False
    env["ASYNCGATE_NATS_URL"] = f"nats://127.0.0.1:{port}"
    url_file = record_nats_url(settings.data_dir, env["ASYNCGATE_NATS_URL"])
    stack.callback(url_file.unlink, missing_ok=True)
    describe_holder(
        lock,
        f"pid {os.getpid()}, NATS on port {port}, "
        f"GraphQL on http://{settings.http_host}:{settings.http_port}/graphql",
    )
    say("up", f"embedded NATS with JetStream on port {port}, data in {store}")
    say("up", f"its URL is in {url_file}, where asyncgate ops looks for it")
    return True


async def run_stack(settings: Settings, environ: Mapping[str, str]) -> int:
    """Run the stack until Ctrl-C/SIGTERM or until a service exits; return an exit code."""
    env = dict(environ)
    processes: dict[str, asyncio.subprocess.Process] = {}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    stack = contextlib.ExitStack()
    try:
        # Set in the environment or in ASYNCGATE_ENV_FILE (the services read it too): use that.
        embedded = "nats_url" not in settings.model_fields_set
        if embedded and not await _start_embedded_nats(settings, env, stack, processes):
            return 1
        say("up", f"NATS: {env['ASYNCGATE_NATS_URL'] if embedded else settings.nats_url}")
        if "actions_file" not in settings.model_fields_set:
            # The demo action handler runs next to the stack, and the demo actions call it.
            port = settings.demo_handler_port
            port = port if port_is_free(port) else free_port()
            env["ASYNCGATE_DEMO_HANDLER_PORT"] = str(port)
            env["ASYNCGATE_DEMO_HANDLER_URL"] = f"http://127.0.0.1:{port}"
            env["ASYNCGATE_ACTIONS_FILE"] = str(ACTIONS_FILE)
            processes["demo"] = await _spawn(
                "demo", [sys.executable, "-m", "services.cli", "demo-handler"], env
            )
            say("up", f"demo action handler (place_order) on port {port}")
        provisioning = await _spawn(
            "provision", [sys.executable, "-m", "services.cli", "provision"], env
        )
        if await provisioning.wait() != 0:
            say("up", "provisioning NATS failed; not starting the services")
            return 1
        for name in SERVICES:
            if name == "callbacks" and not settings.callback_signing_key.get_secret_value():
                say("up", "callbacks off: set ASYNCGATE_CALLBACK_SIGNING_KEY to send them")
                continue
            processes[name] = await _spawn(name, [sys.executable, "-m", "services.cli", name], env)
        host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "") else settings.http_host  # noqa: S104 (comparing, not binding)
        if await _wait_for_port(settings.http_port, host, READY_TIMEOUT_S):
            say("up", f"GraphiQL: http://{host}:{settings.http_port}/graphql  (Ctrl-C stops)")
        exits = [asyncio.create_task(p.wait()) for p in processes.values()]
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait([stopping, *exits], return_when=asyncio.FIRST_COMPLETED)
        crashed = [name for name, p in processes.items() if p.returncode is not None]
        if crashed and not stop.is_set():
            say("up", f"{', '.join(crashed)} exited; stopping the rest")
            return 1
        return 0
    finally:
        for name in STOP_ORDER:
            if name in processes:
                await _stop(name, processes[name], settings.shutdown_grace_s + 5)
        stack.close()
        if processes:
            say("up", "stopped")


def up(settings: Settings) -> int:
    """Entry point of ``asyncgate up``."""
    try:
        return asyncio.run(run_stack(settings, os.environ))
    except DataDirInUseError as error:
        say("up", str(error))
        return 1
