"""The dead-letter format: how a service records a message it set aside instead of using.

A dead letter is stored on ``ops.deadletter.<service>`` in the ASYNCGATE_DEAD_LETTERS stream.
It is a reference, not a copy: the original stays in its own stream (at the sequence in
``Asyncgate-Original-Sequence``) for as long as that stream keeps events, and the dead letter's
body holds only the first ``EXCERPT_BYTES`` of it, so setting aside a message near the server's
``max_payload`` can never produce a message the server refuses.
"""

from typing import Final

# Why the service could not use the message (at most MAX_REASON_CHARS characters).
REASON_HEADER: Final = "Asyncgate-Reason"
# Which service set it aside: "executor" or "projector".
SERVICE_HEADER: Final = "Asyncgate-Service"
# Where the original is: its stream, its sequence there and the subject it was stored on.
STREAM_HEADER: Final = "Asyncgate-Original-Stream"
SEQUENCE_HEADER: Final = "Asyncgate-Original-Sequence"
SUBJECT_HEADER: Final = "Asyncgate-Original-Subject"
# The original's size in bytes; the body is its first EXCERPT_BYTES at most.
SIZE_HEADER: Final = "Asyncgate-Original-Size"
# How many times the service had received the message when it gave up on it.
DELIVERIES_HEADER: Final = "Asyncgate-Deliveries"

EXCERPT_BYTES: Final = 4096
MAX_REASON_CHARS: Final = 500
# Subjects are bounded by the server's max_payload only; a header keeps at most this much.
MAX_SUBJECT_CHARS: Final = 512
