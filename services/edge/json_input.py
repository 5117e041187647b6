"""Reading JSON that a client sent: request bodies, WebSocket frames, stringified token claims.

Python's ``json.loads`` accepts what the edge must refuse: a lone surrogate escape (``\\ud800``)
decodes into a string nothing can encode again (the answer itself failed with a 500), and
nesting a thousand levels deep raises RecursionError. msgspec's decoder refuses both, and is
several times faster.
"""

from typing import Final

import msgspec

_decoder: Final = msgspec.json.Decoder()


class UnreadableJSONError(ValueError):
    """The input is not JSON the edge will read; the message says why, for the client."""


def read_json(data: str | bytes) -> object:
    """The JSON value in ``data``, or UnreadableJSONError: malformed, not UTF-8, holding a lone
    surrogate, a number out of range, or nested too deeply to read safely."""
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as error:
        raise UnreadableJSONError(f"not valid JSON: {error}") from None
    except msgspec.ValidationError as error:
        raise UnreadableJSONError(f"not readable JSON: {error}") from None
    except UnicodeDecodeError:
        raise UnreadableJSONError("not valid UTF-8") from None
    except RecursionError:
        raise UnreadableJSONError("JSON nested too deeply") from None
