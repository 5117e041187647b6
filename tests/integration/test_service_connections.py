"""The FastStream services' NATS connections read headers with the faster parser."""

import pytest

from services.common.nats_headers import FastHeadersClient
from services.common.runtime import ConnectionWatch, create_broker
from services.common.settings import Settings

pytestmark = pytest.mark.nats


async def test_a_service_broker_connects_with_the_faster_header_parser(
    settings: Settings,
) -> None:
    watch = ConnectionWatch("test")
    broker = create_broker(settings, "test", watch)
    await broker.connect()
    try:
        # FastStream's _connect was overridden: if FastStream renames it, this fails.
        assert isinstance(broker.connection, FastHeadersClient)
        assert broker.connection.is_connected
    finally:
        await watch.stop()
        await broker.stop()
