"""The ``asyncgate`` command: each service alone, or the whole stack with ``up``."""

import argparse
import logging
import signal
import sys
from collections.abc import Callable
from types import FrameType

import uvloop

from services.actions.config import ActionsConfigError
from services.common.settings import ConfigurationError, Settings, documented_variables
from services.common.target import TargetSchemaError
from services.edge.actions import ActionSchemaError


def _run_edge(settings: Settings, _: argparse.Namespace) -> int:
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
    from services.common.runtime import run_service
    from services.executor.app import create_app

    # uvloop, as uvicorn uses for the edge: about a quarter less CPU per message than asyncio's.
    return uvloop.run(run_service(create_app(settings), "executor"))


def _run_projector(settings: Settings, _: argparse.Namespace) -> int:
    from services.common.runtime import run_service
    from services.projector.app import create_app

    return uvloop.run(run_service(create_app(settings), "projector"))


def _run_demo_handler(settings: Settings, _: argparse.Namespace) -> int:
    import uvicorn

    from examples.actions.handler import app

    uvicorn.run(app, host="127.0.0.1", port=settings.demo_handler_port, log_level="warning")
    return 0


def _provision(settings: Settings, _: argparse.Namespace) -> int:
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
    from services.supervisor import up

    return up(settings)


def _print_config(_: Settings, __: argparse.Namespace) -> int:
    for name, default in documented_variables():
        print(f"{name}={default}")  # noqa: T201 (the command's output)
    return 0


def _print_token(settings: Settings, arguments: argparse.Namespace) -> int:
    from services.edge.auth import issue_token

    token = issue_token(settings, tenant=arguments.tenant, user=arguments.user, ttl_s=arguments.ttl)
    print(token)  # noqa: T201 (the command's output)
    return 0


def _print_api_key(_: Settings, arguments: argparse.Namespace) -> int:
    from services.edge.auth import hash_api_key, new_api_key

    key = new_api_key()
    print(f"API key (give it to the client; it is not stored anywhere): {key}")  # noqa: T201
    print("Entry for ASYNCGATE_API_KEYS_FILE:")  # noqa: T201
    print(f"  - sha256: {hash_api_key(key)}")  # noqa: T201
    print(f"    tenant: {arguments.tenant}")  # noqa: T201
    print(f"    user: {arguments.user}")  # noqa: T201
    return 0


Command = Callable[[Settings, argparse.Namespace], int]

COMMANDS: dict[str, tuple[Command, str]] = {
    "up": (_run_up, "run NATS, the edge, an executor and the projector together"),
    "provision": (_provision, "create or update the streams, buckets and consumers in NATS"),
    "edge": (_run_edge, "serve the GraphQL endpoint"),
    "executor": (_run_executor, "run requested operations"),
    "projector": (_run_projector, "fold events into the status view"),
    "demo-handler": (_run_demo_handler, "serve the demo action handler (place_order)"),
    "config": (_print_config, "list the ASYNCGATE_* variables and their defaults"),
    "token": (_print_token, "print a token signed with ASYNCGATE_JWT_SECRET (HS256)"),
    "api-key": (_print_api_key, "make a new API key and its entry for the keys file"),
}


def _run_ops(argv: list[str]) -> int:
    """``asyncgate ops ...``: the operator's commands, a typer app of their own."""
    from services.ops.app import app

    try:
        app(argv, prog_name="asyncgate ops")
    except SystemExit as end:
        return end.code if isinstance(end.code, int) else 0 if end.code is None else 2
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one command."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["ops"]:
        return _run_ops(argv[1:])
    parser = argparse.ArgumentParser(prog="asyncgate", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Listed for --help; `asyncgate ops --help` tells the rest.
    commands.add_parser("ops", help="operate: list, show, tail, replay, dead-letters")
    for name, (_, help_text) in COMMANDS.items():
        command = commands.add_parser(name, help=help_text)
        if name in ("token", "api-key"):
            command.add_argument("--tenant", required=True, help="the tenant id")
            command.add_argument("--user", required=True, help="the user id")
        if name == "token":
            command.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    arguments = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = Settings.from_env()
        return COMMANDS[arguments.command][0](settings, arguments)
    except (ConfigurationError, TargetSchemaError, ActionsConfigError, ActionSchemaError) as error:
        print(f"asyncgate: {error}", file=sys.stderr)  # noqa: T201 (a start-up error for humans)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
