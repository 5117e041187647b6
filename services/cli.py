"""The asyncgate command: run each service alone, or the whole stack with `asyncgate up`."""

import argparse
import inspect
import json
import logging
import os
import shutil
import signal
import sys
from collections.abc import Callable
from types import FrameType

import uvloop

from services.actions.config import ActionsConfigError
from services.callbacks.signing import SigningKeyError
from services.common.settings import (
    ConfigurationError,
    Settings,
    is_secret,
    load_settings,
    variable_name,
)
from services.common.target import TargetSchemaError
from services.common.upstream.schema import UpstreamSchemaError, UpstreamUnavailableError
from services.edge.actions import ActionSchemaError

# sysexits' EX_UNAVAILABLE: the upstream API (ASYNCGATE_UPSTREAM_URL) did not give its schema.
EXIT_UPSTREAM_UNAVAILABLE = 69


def _run_edge(settings: Settings, _: argparse.Namespace) -> int:
    """Serve the GraphQL endpoint (HTTP and WebSocket) against ASYNCGATE_NATS_URL.

    It queues operations, answers reads from the view and pushes subscriptions; it needs the
    streams and buckets that `asyncgate provision` (or `asyncgate up`) creates.
    """
    import uvicorn

    from services.common.runtime import EXIT_NOT_PROVISIONED
    from services.edge.app import create_app

    class EdgeServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if not self.started:
                # Still waiting for NATS at start-up: uvicorn would only act on the signal once
                # NATS answered. Nothing is served yet, so there is nothing to finish: end now,
                # by the signal, as uvicorn itself ends after a stop.
                signal.signal(sig, signal.SIG_DFL)
                signal.raise_signal(sig)
            super().handle_exit(sig, frame)

    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        lifespan="on",
        access_log=settings.access_log,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
    )
    try:
        EdgeServer(config).run()
    except SystemExit:
        if getattr(app.state, "not_provisioned", False):
            return EXIT_NOT_PROVISIONED
        raise
    return 0


def _run_executor(settings: Settings, _: argparse.Namespace) -> int:
    """Run queued operations against the target schema (and actions), reporting each outcome.

    Start as many as you like against one NATS: they share the work.
    """
    from services.common.runtime import run_service
    from services.executor.app import create_app

    # uvloop, as uvicorn uses for the edge: about a quarter less CPU per message than asyncio's.
    return uvloop.run(run_service(create_app(settings), "executor"))


def _run_projector(settings: Settings, _: argparse.Namespace) -> int:
    """Fold the operations' events into the view that reads, listings and subscriptions use."""
    from services.common.runtime import run_service
    from services.projector.app import create_app

    return uvloop.run(run_service(create_app(settings), "projector"))


def _run_callbacks(settings: Settings, _: argparse.Namespace) -> int:
    """POST each ended operation's final state to the callback URL its request named, signed
    as Standard Webhooks says, retrying failed attempts on ASYNCGATE_CALLBACK_BACKOFF_S.

    Needs ASYNCGATE_CALLBACK_SIGNING_KEY. Start as many as you like: they share the work.
    """
    from services.callbacks.app import create_app
    from services.common.runtime import run_service

    return uvloop.run(run_service(create_app(settings), "callbacks"))


def _print_callback_secret(settings: Settings, arguments: argparse.Namespace) -> int:
    """Print the secret a tenant's callbacks are signed with (whsec_ and its base64), derived
    from ASYNCGATE_CALLBACK_SIGNING_KEY, for the tenant's receivers to check signatures with.
    """
    from contracts.names import encode_id
    from services.callbacks.signing import master_key, secret_text, tenant_secret

    key = master_key(settings.callback_signing_key.get_secret_value())
    print(secret_text(tenant_secret(key, encode_id(arguments.tenant, "tenant"))))  # noqa: T201
    return 0


def _run_demo_handler(settings: Settings, _: argparse.Namespace) -> int:
    """Serve the demo action handler (place_order) on ASYNCGATE_DEMO_HANDLER_PORT.

    `asyncgate up` runs it next to the stack when ASYNCGATE_ACTIONS_FILE is not set.
    """
    import uvicorn

    from examples.actions.handler import app

    uvicorn.run(app, host="127.0.0.1", port=settings.demo_handler_port, log_level="warning")
    return 0


def _provision(settings: Settings, _: argparse.Namespace) -> int:
    """Create or update the streams, buckets and consumers asyncgate needs in NATS.

    Run it once per NATS (again after changing ASYNCGATE_RESULT_TTL_HOURS,
    ASYNCGATE_STREAM_EXTRA_HOURS or ASYNCGATE_REPLICAS) with a login allowed to create streams.
    """
    import nats.errors

    from services.common.layout import NotProvisionedError
    from services.provision import provision_nats

    try:
        report = uvloop.run(provision_nats(settings))
    except (nats.errors.Error, TimeoutError, NotProvisionedError) as error:
        print(f"asyncgate provision: {str(error) or type(error).__name__}", file=sys.stderr)  # noqa: T201
        return 1
    for line in report:
        print(line)  # noqa: T201 (the command's output)
    return 0


def _run_up(settings: Settings, _: argparse.Namespace) -> int:
    """Run the whole stack on this machine: an embedded NATS (unless ASYNCGATE_NATS_URL names
    one), the demo action handler, the edge, an executor and the projector.

    Ctrl-C stops them in an order that loses nothing and exits 0.
    """
    from services.supervisor import up

    return up(settings)


SECRET_MASK = "********"  # noqa: S105 (what a set secret is shown as, not a secret)


def _print_config(_: Settings, arguments: argparse.Namespace) -> int:
    """Show every ASYNCGATE_* setting in effect and where it came from: the environment, the
    file ASYNCGATE_ENV_FILE names (".env file"), or the default. Secrets are masked.
    """
    loaded = load_settings()
    values = loaded.settings.model_dump(mode="json")
    rows = []
    for name, value in values.items():
        shown = (SECRET_MASK if value else "") if is_secret(name) else value
        rows.append((variable_name(name), shown, loaded.origins[name]))
    if arguments.json:
        document = {variable: {"value": v, "source": source} for variable, v, source in rows}
        print(json.dumps(document, indent=2))  # noqa: T201 (the command's output)
        return 0
    texts = [(variable, "(none)" if v in (None, "") else str(v), src) for variable, v, src in rows]
    name_width = max(len(variable) for variable, _, _ in texts)
    value_width = max(len(text) for _, text, _ in texts)
    for variable, text, source in texts:
        print(f"{variable:<{name_width}}  {text:<{value_width}}  {source}")  # noqa: T201
    return 0


def _clean(settings: Settings, _: argparse.Namespace) -> int:
    """Delete the local stack's data (ASYNCGATE_DATA_DIR): every stored operation and result.

    Refused while an `asyncgate up` runs on that data.
    """
    from services.supervisor import LOCK_FILE, DataDirInUseError, data_dir_lock

    data_dir = settings.data_dir
    if not data_dir.exists():
        print(f"asyncgate clean: {data_dir} does not exist; nothing to delete")  # noqa: T201
        return 0
    if not (data_dir / LOCK_FILE).exists() and not (data_dir / "nats").exists():
        # Whatever ASYNCGATE_DATA_DIR names, delete only what `asyncgate up` made.
        print(  # noqa: T201 (a refusal for humans)
            f"asyncgate clean: {data_dir} does not look like asyncgate's data (no {LOCK_FILE} "
            "or nats/ in it); delete it yourself if you mean to",
            file=sys.stderr,
        )
        return 1
    try:
        with data_dir_lock(data_dir):
            shutil.rmtree(data_dir)
    except DataDirInUseError:
        holder = (data_dir / LOCK_FILE).read_text(encoding="utf-8").strip() or "another process"
        print(  # noqa: T201 (a refusal for humans)
            f"asyncgate clean: not deleting anything: a running asyncgate up uses {data_dir} "
            f"({holder}); stop it (Ctrl-C) first",
            file=sys.stderr,
        )
        return 1
    print(f"asyncgate clean: deleted {data_dir}")  # noqa: T201 (the command's output)
    return 0


def _print_token(settings: Settings, arguments: argparse.Namespace) -> int:
    """Print a bearer token for a tenant and user, signed with ASYNCGATE_JWT_SECRET (HS256).

    For local use and tests; production tokens come from your identity provider.
    """
    from services.edge.auth import issue_token

    token = issue_token(settings, tenant=arguments.tenant, user=arguments.user, ttl_s=arguments.ttl)
    print(token)  # noqa: T201 (the command's output)
    return 0


def _print_api_key(_: Settings, arguments: argparse.Namespace) -> int:
    """Make a new API key for a tenant and user, and print it with the entry (its SHA-256) to
    add to ASYNCGATE_API_KEYS_FILE. The key itself is stored nowhere.
    """
    from services.edge.auth import hash_api_key, new_api_key

    key = new_api_key()
    print(f"API key (give it to the client; it is not stored anywhere): {key}")  # noqa: T201
    print("Entry for ASYNCGATE_API_KEYS_FILE:")  # noqa: T201
    print(f"  - sha256: {hash_api_key(key)}")  # noqa: T201
    print(f"    tenant: {arguments.tenant}")  # noqa: T201
    print(f"    user: {arguments.user}")  # noqa: T201
    return 0


Command = Callable[[Settings, argparse.Namespace], int]

# The commands that run a long-lived service, each in a process of its own.
SERVICES = frozenset({"edge", "executor", "projector", "callbacks"})

COMMANDS: dict[str, tuple[Command, str]] = {
    "up": (_run_up, "run NATS, the edge, an executor and the projector together"),
    "provision": (_provision, "create or update the streams, buckets and consumers in NATS"),
    "edge": (_run_edge, "serve the GraphQL endpoint"),
    "executor": (_run_executor, "run requested operations"),
    "projector": (_run_projector, "fold events into the status view"),
    "callbacks": (_run_callbacks, "POST ended operations to their callback URLs"),
    "demo-handler": (_run_demo_handler, "serve the demo action handler (place_order)"),
    "config": (_print_config, "show the settings in effect and where each came from"),
    "clean": (_clean, "delete the local stack's data (refused while it runs)"),
    "token": (_print_token, "print a token signed with ASYNCGATE_JWT_SECRET (HS256)"),
    "api-key": (_print_api_key, "make a new API key and its entry for the keys file"),
    "callback-secret": (_print_callback_secret, "print a tenant's callback signing secret"),
}


def _run_ops(argv: list[str]) -> int:
    """``asyncgate ops ...``: the operator's commands, a typer app of their own."""
    from services.ops.app import app

    try:
        app(argv, prog_name="asyncgate ops")
    except SystemExit as end:
        return end.code if isinstance(end.code, int) else 0 if end.code is None else 2
    return 0


def configure_logging() -> None:
    """INFO and above to standard error, one line each; httpx's own lines only from WARNING.

    httpx logs every request's whole URL at INFO, and a URL asyncgate calls can carry a
    credential (a token in an action handler's, an upstream's or a callback receiver's query
    string); asyncgate's own lines about those calls leave the URL out.
    """
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one command."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["ops"]:
        return _run_ops(argv[1:])
    parser = argparse.ArgumentParser(prog="asyncgate", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Listed for --help; `asyncgate ops --help` tells the rest.
    commands.add_parser("ops", help="operate: list, show, tail, replay, dead-letters")
    for name, (function, help_text) in COMMANDS.items():
        command = commands.add_parser(
            name,
            help=help_text,
            description=inspect.getdoc(function),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if name in ("token", "api-key", "callback-secret"):
            command.add_argument("--tenant", required=True, help="the tenant id")
        if name in ("token", "api-key"):
            command.add_argument("--user", required=True, help="the user id")
        if name == "token":
            command.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
        if name == "config":
            command.add_argument("--json", action="store_true", help="print JSON, for scripts")
    arguments = parser.parse_args(argv)
    configure_logging()
    if arguments.command in SERVICES:
        from services.common.runtime import freeze_at_startup

        freeze_at_startup()  # this process runs the one service and nothing else
    try:
        settings = Settings.from_env()
        return COMMANDS[arguments.command][0](settings, arguments)
    except (
        ConfigurationError,
        TargetSchemaError,
        ActionsConfigError,
        ActionSchemaError,
        UpstreamSchemaError,
        SigningKeyError,
    ) as error:
        print(f"asyncgate: {error}", file=sys.stderr)  # noqa: T201 (a start-up error for humans)
        return 2
    except UpstreamUnavailableError as error:
        print(f"asyncgate: {error}", file=sys.stderr)  # noqa: T201 (a start-up error for humans)
        return EXIT_UPSTREAM_UNAVAILABLE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`asyncgate config | head`): not an error worth a traceback.
        # Python's own advice: point stdout at /dev/null so the exit's flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
