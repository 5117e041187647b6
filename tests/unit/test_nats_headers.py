"""The faster header parser reads every header block as nats-py's own does."""

import hypothesis
import hypothesis.strategies as st
from nats.aio.client import Client

from services.common.nats_headers import FastHeadersClient, parse_header_lines

EVENT_HEADERS = (
    b"ce-specversion: 1.0\r\nce-id: 6f1c\r\nce-source: asyncgate/edge\r\n"
    b"Nats-Msg-Id: op.requested\r\nNats-Stream: ASYNCGATE_OPERATIONS\r\n"
    b"Nats-Subject: ops.events.t.op.requested\r\nNats-Sequence: 12\r\n\r\n"
)
ODD_LINES = [
    b"",
    b"no colon here",
    b": empty name",
    b"Spaced Name: x",
    b"Tab\tName: x",
    b"\x1cSep: x",
    b"  Padded  :   value  ",
    b"Colon:in:value",
    b"Name:NoSpace",
    b"Caf\xc3\xa9: accented name",
    b"Bad-Utf8: \xff\xfe",
    b"Repeated: first",
    b"Repeated: second",
    b"Unicode-Value: \xe2\x82\xac",
]
header_lines = st.lists(
    st.one_of(
        st.sampled_from(ODD_LINES),
        st.binary(max_size=30).map(lambda b: b.replace(b"\r\n", b"")),
        st.text(max_size=20).map(lambda t: t.encode("utf-8", "replace")),
    ),
    max_size=12,
)


def test_event_headers_read_as_nats_py_reads_them() -> None:
    assert parse_header_lines(EVENT_HEADERS) == Client._parse_header_lines(EVENT_HEADERS)
    assert parse_header_lines(EVENT_HEADERS)["Nats-Sequence"] == "12"


def test_odd_lines_read_as_nats_py_reads_them() -> None:
    raw = b"\r\n".join(ODD_LINES)
    assert parse_header_lines(raw) == Client._parse_header_lines(raw)


@hypothesis.given(header_lines)
def test_any_header_block_reads_as_nats_py_reads_it(lines: list[bytes]) -> None:
    raw = b"\r\n".join(lines)
    assert parse_header_lines(raw) == Client._parse_header_lines(raw)


def test_the_client_uses_it_in_place_of_nats_pys() -> None:
    # nats-py's parser is a private method: this fails if it is renamed or moved.
    assert "_parse_header_lines" in vars(Client)
    assert FastHeadersClient()._parse_header_lines(EVENT_HEADERS) == parse_header_lines(
        EVENT_HEADERS
    )
