"""The ``asyncgate`` command: each service alone, or the whole stack with ``up``."""

import argparse
import asyncio
import logging
import sys

from services.actions.config import ActionsConfigError
from services.common.settings import ConfigurationError, Settings, documented_variables
from services.common.target import TargetSchemaError
from services.edge.actions import ActionSchemaError


def _run_edge(settings: Settings) -> int:
    import uvicorn

    from services.edge.app import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        lifespan="on",
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
    )
    return 0


def _run_executor(settings: Settings) -> int:
    from services.executor.app import create_app

    asyncio.run(create_app(settings).run())
    return 0


def _run_projector(settings: Settings) -> int:
    from services.projector.app import create_app

    asyncio.run(create_app(settings).run())
    return 0


def _run_demo_handler(settings: Settings) -> int:
    import uvicorn

    from examples.actions.handler import app

    uvicorn.run(app, host="127.0.0.1", port=settings.demo_handler_port, log_level="warning")
    return 0


def _run_up(settings: Settings) -> int:
    from services.supervisor import up

    return up(settings)


def _print_config(_: Settings) -> int:
    for name, default in documented_variables():
        print(f"{name}={default}")  # noqa: T201 (the command's output)
    return 0


COMMANDS = {
    "up": (_run_up, "run NATS, the edge, an executor and the projector together"),
    "edge": (_run_edge, "serve the GraphQL endpoint"),
    "executor": (_run_executor, "run requested operations"),
    "projector": (_run_projector, "fold events into the status view"),
    "demo-handler": (_run_demo_handler, "serve the demo action handler (place_order)"),
    "config": (_print_config, "list the ASYNCGATE_* variables and their defaults"),
}


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one command."""
    parser = argparse.ArgumentParser(prog="asyncgate", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        commands.add_parser(name, help=help_text)
    arguments = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = Settings.from_env()
        return COMMANDS[arguments.command][0](settings)
    except (ConfigurationError, TargetSchemaError, ActionsConfigError, ActionSchemaError) as error:
        print(f"asyncgate: {error}", file=sys.stderr)  # noqa: T201 (a start-up error for humans)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
