"""The published language of asyncgate: event and view types, subjects and names.

Everything that crosses a process boundary is defined here, once. Events are JSON on the wire so a
consumer in any language can read them; the JSON Schemas under ``contracts/schemas`` are generated
from these types (``just schemas``) and a test fails when they are stale.
"""
