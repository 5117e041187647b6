"""What the services' logging keeps out of the log."""

import subprocess
import sys
import textwrap

from tests.support.processes import REPO_ROOT

CALL_WITH_A_TOKEN = textwrap.dedent(
    """
    import logging
    import httpx
    from services.cli import configure_logging

    configure_logging()
    transport = httpx.MockTransport(lambda request: httpx.Response(200))
    with httpx.Client(transport=transport) as client:
        client.post("http://receiver.example/hook?token=s3cret-token")
    logging.getLogger("asyncgate.callbacks").info("delivered")
    """
)


def test_a_url_an_http_call_went_to_is_not_logged() -> None:
    # The URL of a handler, an upstream or a callback receiver may carry a credential.
    finished = subprocess.run(
        [sys.executable, "-c", CALL_WITH_A_TOKEN],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    assert "s3cret-token" not in finished.stderr
    assert "INFO asyncgate.callbacks: delivered" in finished.stderr
