"""Finding the stack's NATS and logging in to it as an operator, or saying in one line why not.

The URL comes from ``ASYNCGATE_NATS_URL`` when it is set, else from the file ``asyncgate up``
records in its data directory (``ASYNCGATE_DATA_DIR``), else the default; the login from the
same ``ASYNCGATE_NATS_*`` settings the services use.
"""

from dataclasses import dataclass, field
from typing import Any, Final

import nats
import nats.errors
from nats.aio.client import Client as NatsClient

from services.common.nats_auth import nats_connect_options
from services.common.nats_headers import FastHeadersClient
from services.common.nats_server import NATS_URL_FILE, recorded_nats_url
from services.common.settings import Settings

CONNECT_TIMEOUT_S: Final = 2.0
# Exit statuses: 1 for "found something wrong" (a difference, nothing there), 2 for "could not
# look" (NATS unreachable, bad input), as grep and diff use them.
EXIT_FOUND: Final = 1
EXIT_TROUBLE: Final = 2


class OpsError(Exception):
    """A one-line message for the operator, and the exit status to end with."""

    def __init__(self, message: str, exit_code: int = EXIT_TROUBLE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class NatsLocation:
    """Which servers to try, and where that came from (for the error message)."""

    servers: list[str]
    source: str


def locate(settings: Settings) -> NatsLocation:
    """Where the stack's NATS is: ASYNCGATE_NATS_URL (in the environment or the env file), else
    what ``asyncgate up`` recorded, else the default URL."""
    if "nats_url" in settings.model_fields_set:
        return NatsLocation(settings.nats_servers, "ASYNCGATE_NATS_URL")
    recorded = recorded_nats_url(settings.data_dir)
    if recorded is not None:
        return NatsLocation([recorded], f"recorded by asyncgate up in {settings.data_dir}")
    return NatsLocation(
        settings.nats_servers,
        f"the default; no {NATS_URL_FILE} in {settings.data_dir}: is asyncgate up running?",
    )


@dataclass
class _Reasons:
    """The last error nats-py reported while connecting (it raises only NoServersError)."""

    last: list[str] = field(default_factory=list)

    async def note(self, error: Exception) -> None:
        self.last = [str(error) or type(error).__name__]


async def connect_operator(settings: Settings, location: NatsLocation) -> NatsClient:
    """A NATS connection with the configured login; OpsError (exit 2) if none can be had."""
    reasons = _Reasons()
    where = ",".join(location.servers)
    try:
        options: dict[str, Any] = nats_connect_options(settings)
        # nats-py annotates the waits as int; it takes seconds as floats.
        options.update(
            connect_timeout=CONNECT_TIMEOUT_S,
            max_reconnect_attempts=1,
            reconnect_time_wait=0.2,
            error_cb=reasons.note,
        )
        nc = FastHeadersClient()
        await nc.connect(location.servers, name="asyncgate-ops", **options)
        return nc
    except (OSError, TimeoutError, nats.errors.Error) as error:
        reason = "; ".join(reasons.last) or str(error) or type(error).__name__
        raise OpsError(f"cannot reach NATS at {where} ({location.source}): {reason}") from None
