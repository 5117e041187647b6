"""``python -m examples.consumer``: run the example consumer until Ctrl-C."""

import asyncio
import logging
import os
import sys

from examples.consumer.app import ConsumerSettings, create_app


def main() -> int:
    """Read the settings from the environment and run the consumer."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    url = os.environ.get("ASYNCGATE_NATS_URL", "")
    if not url:
        print("set ASYNCGATE_NATS_URL to asyncgate's NATS", file=sys.stderr)  # noqa: T201
        return 2
    settings = ConsumerSettings(
        # nats-py splits no server list itself.
        servers=[server.strip() for server in url.split(",") if server.strip()],
        user=os.environ.get("ASYNCGATE_NATS_USER", ""),
        password=os.environ.get("ASYNCGATE_NATS_PASSWORD", ""),
        durable=os.environ.get("CONSUMER_DURABLE", "example-consumer"),
    )
    asyncio.run(create_app(settings).run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
