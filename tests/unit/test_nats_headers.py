"""The faster header parser reads every header block as nats-py's own does, and the faster
writer sends the bytes nats-py's own would."""

import asyncio

import hypothesis
import hypothesis.strategies as st
import pytest
from nats.aio.client import Client
from nats.errors import BadHeaderError

from services.common.nats_headers import FastHeadersClient, header_block, parse_header_lines

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


EVENT_HEADER_DICT = {
    "ce-specversion": "1.0",
    "ce-id": "6f1c2e9a-3875-44fb-bdb8-bc6ab47716dc",
    "ce-time": "2026-12-01T05:00:00.123456Z",
    "Nats-Msg-Id": "op-1.requested",
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "Nats-Expected-Last-Subject-Sequence": "12",
}
token_names = st.one_of(
    st.sampled_from(["ce-id", "Nats-Msg-Id", "  padded  ", "", " "]),
    st.from_regex(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,12}", fullmatch=True),
)
any_names = st.one_of(token_names, st.sampled_from(["bad name", "bad:name", "é"]), st.text())
header_values = st.one_of(
    st.sampled_from(["", " x ", "a\r\nInjected: yes", "line\nbreak", "tab\tin", "€uro"]),
    st.text(max_size=20),
)


class _Captured:
    """A client of ``cls`` that is never connected: what it would send is kept."""

    def __init__(self, cls: type[Client]) -> None:
        self.client = cls()
        self.sent: list[bytes] = []

        async def keep(command: bytes, priority: bool = False) -> None:
            self.sent.append(command)

        self.client._send_command = keep  # type: ignore[method-assign,assignment]
        self.client._flush_queue = None


def _sent_by(cls: type[Client], headers: dict[str, str] | None) -> bytes | type[Exception]:
    captured = _Captured(cls)
    payload = b'{"x": 1}'
    try:
        asyncio.run(
            captured.client._send_publish("ops.t.op", "_INBOX.r.1", payload, len(payload), headers)
        )
    except BadHeaderError:
        return BadHeaderError
    [command] = captured.sent
    return command


def test_event_headers_are_sent_as_nats_py_sends_them() -> None:
    sent = _sent_by(FastHeadersClient, EVENT_HEADER_DICT)
    assert sent == _sent_by(Client, EVENT_HEADER_DICT)
    assert isinstance(sent, bytes)
    assert sent.startswith(b"HPUB ops.t.op _INBOX.r.1 ")
    assert b"\r\nNats-Msg-Id: op-1.requested\r\n" in sent


@hypothesis.given(st.dictionaries(token_names, header_values, max_size=8))
def test_any_values_are_sent_as_nats_py_sends_them(headers: dict[str, str]) -> None:
    assert _sent_by(FastHeadersClient, headers) == _sent_by(Client, headers)


@hypothesis.given(st.dictionaries(any_names, header_values, max_size=4))
def test_any_names_are_sent_or_refused_as_nats_py_does(headers: dict[str, str]) -> None:
    assert _sent_by(FastHeadersClient, headers) == _sent_by(Client, headers)


def test_a_value_cannot_end_its_line() -> None:
    block = header_block({"Note": "a\r\nNats-Msg-Id: forged"})
    assert block == b"NATS/1.0\r\nNote: a  Nats-Msg-Id: forged\r\n\r\n"


def test_a_name_that_is_not_a_token_is_refused() -> None:
    with pytest.raises(BadHeaderError):
        header_block({"Bad Name": "x"})


def test_messages_without_headers_keep_nats_pys_path() -> None:
    assert _sent_by(FastHeadersClient, None) == _sent_by(Client, None)
    assert "_send_publish" in vars(Client)  # the private method this replaces
