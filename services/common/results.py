"""Results too large for their events: objects in the results bucket (a JetStream Object Store).

The executor writes an object (``put``) before the terminal event that refers to it, so a stored
event never points at nothing; the edge reads it whole (``read``, for asyncResult.data) or chunk
by chunk (``chunks``, for GET /results/<id>) and deletes it with its operation (asyncDelete).
Objects expire with the bucket's max_age, as the views do. The projector never reads them.

Writing is nats-py's Object Store: chunks of 128 KiB, then the metadata with the size and a
SHA-256. Reading is a batched direct get of a few chunks at a time, so a reader holds at most one
batch (about 1 MiB) whatever the object's size and however slow its client, and leaves nothing
on the server (no consumer); the digest is checked as the chunks go by. Deleting purges the
object's chunks, then its metadata: nothing of it is left, not even a deletion marker.
"""

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

from nats.js import JetStreamContext
from nats.js.api import ObjectInfo
from nats.js.errors import NotFoundError
from nats.js.object_store import ObjectStore

from contracts.events import ResultReference
from contracts.names import RESULTS_BUCKET
from contracts.view import OperationView
from services.common.direct_gets import batch_get
from services.common.reply_inbox import ReplyInbox

# Chunks asked for at once: 1 MiB of 128 KiB chunks per round trip.
BATCH_CHUNKS: Final = 8
READ_TIMEOUT_S: Final = 5.0
_DIGEST_PREFIX: Final = "SHA-256="


# Where the edge serves results to their owners (``GET /results/<operation id>``).
RESULTS_PATH: Final = "/results"


def data_url(view: OperationView) -> str | None:
    """Where the owner downloads the operation's result (``asyncResult.dataUrl``, relative to
    the edge); None until it has one."""
    if view.response is None and view.response_ref is None:
        return None
    return f"{RESULTS_PATH}/{view.operation_id}"


class ResultUnavailableError(Exception):
    """The object a reference names is not there (expired, or deleted with its operation), or
    is not the one the reference describes."""


class ResultCorruptError(ResultUnavailableError):
    """The object's bytes do not add up to the size and digest its reference states."""


@dataclass(frozen=True)
class ResultStore:
    """The results bucket over one connection; ``inbox`` routes the batched reads' replies."""

    js: JetStreamContext
    inbox: ReplyInbox
    bucket: str = RESULTS_BUCKET

    @property
    def stream(self) -> str:
        """The stream the bucket lives in."""
        return f"OBJ_{self.bucket}"

    async def put(self, name: str, body: bytes) -> ResultReference:
        """Store ``body`` as the object ``name`` (replacing an earlier one of that name) and
        return the reference an event carries."""
        # Built directly: js.object_store() would ask for the stream's info on every put.
        store = ObjectStore(name=self.bucket, stream=self.stream, js=self.js)
        info = await store.put(name, body)
        return ResultReference(name=name, size=info.size or 0, digest=info.digest or "")

    async def chunks(self, reference: ResultReference) -> AsyncIterator[bytes]:
        """The object's bytes, a chunk at a time, in order.

        Raises ResultUnavailableError before the first chunk if the object is not there (or is
        not the referenced one), and ResultCorruptError after the last if the bytes do not match
        the reference (a caller that already sent some of them must abort).
        """
        info = await self._info(reference.name)
        if info.digest != reference.digest or info.size != reference.size:
            raise ResultUnavailableError(f"{reference.name} is not the object referred to")
        subject = f"$O.{self.bucket}.C.{info.nuid}"
        digest = hashlib.sha256()
        received = 0
        next_sequence = 1
        while received < reference.size:
            batch = await batch_get(
                self.inbox.nc,
                self.inbox,
                self.stream,
                {"seq": next_sequence, "next_by_subj": subject, "batch": BATCH_CHUNKS},
                limit=BATCH_CHUNKS,
                timeout_s=READ_TIMEOUT_S,
            )
            if not batch.messages:
                break  # deleted while being read
            for sequence, _, data in batch.messages:
                digest.update(data)
                received += len(data)
                next_sequence = sequence + 1
                yield data
        stated = _DIGEST_PREFIX + base64.urlsafe_b64encode(digest.digest()).decode()
        if received != reference.size or stated != reference.digest:
            raise ResultCorruptError(
                f"{reference.name}: read {received} bytes of {reference.size}, digest {stated}"
            )

    async def read(self, reference: ResultReference) -> bytes:
        """The whole object (the caller bounds ``reference.size`` first)."""
        return b"".join([chunk async for chunk in self.chunks(reference)])

    async def delete(self, name: str) -> bool:
        """Remove the object ``name``, chunks first (a retry still finds the metadata naming
        them); False if there was none."""
        try:
            info = await self._info(name)
        except ResultUnavailableError:
            return False
        await self.js.purge_stream(self.stream, subject=f"$O.{self.bucket}.C.{info.nuid}")
        await self.js.purge_stream(self.stream, subject=self._meta_subject(name))
        return True

    async def exists(self, name: str) -> bool:
        """Whether the object ``name`` is stored."""
        try:
            await self._info(name)
        except ResultUnavailableError:
            return False
        return True

    def _meta_subject(self, name: str) -> str:
        return f"$O.{self.bucket}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"

    async def _info(self, name: str) -> ObjectInfo:
        try:
            message = await self.js.get_msg(
                self.stream, subject=self._meta_subject(name), direct=True
            )
        except NotFoundError:
            raise ResultUnavailableError(f"no object {name}") from None
        info: ObjectInfo = ObjectInfo.from_response(json.loads(message.data or b"{}"))
        if info.deleted or not info.nuid:
            raise ResultUnavailableError(f"no object {name}")
        return info
