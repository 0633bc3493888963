"""Passages added to the assistant's knowledge while edgegate runs, in NATS KV `edgegate-knowledge`.

A person's answer to an escalated question becomes a passage with one click.
The knowledge folder may be read-only (a ConfigMap) and every gateway replica
must learn it without a restart, so added passages live in a KV bucket that
every replica follows (`start`), not in the folder.

One entry per question: the key is the first 32 hex digits of the SHA-256 of
the question, case-folded and with its whitespace collapsed, so adding the
same question again replaces its answer. The value is a JSON object:

    {"question": "...", "answer": "...", "source": "console:alice",
     "addedAt": "2026-12-04T01:56:11Z"}

`source` is shown with the answers the passage gives. Deleting a key takes
the passage out of every replica's knowledge.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
from collections.abc import Callable

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from edgegate_common import subjects
from edgegate_common.bus import ensure_key_value
from edgegate_common.errors import InvalidArgument, Unavailable
from edgegate_common.logging import get_logger
from edgegate_gateway.adapters import kv_watch
from edgegate_gateway.core.knowledge import Passage

log = get_logger(__name__)

MAX_QUESTION_CHARS = 1_000
MAX_ANSWER_CHARS = 8_000
MAX_SOURCE_CHARS = 200

# (key, the passage now under it, or None when it was removed)
Learn = Callable[[str, Passage | None], None]


def passage_key(question: str) -> str:
    """The stable key of a question: the same words, however cased and spaced, share it."""
    normalised = " ".join(question.casefold().split())
    return hashlib.sha256(normalised.encode()).hexdigest()[:32]


class KnowledgeAdditions:
    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv
        self._watcher: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, js: JetStreamContext, *, replicas: int = 1) -> KnowledgeAdditions:
        kv = await ensure_key_value(
            js,
            KeyValueConfig(
                bucket=subjects.KV_KNOWLEDGE, storage=StorageType.FILE, replicas=replicas
            ),
        )
        return cls(kv)

    async def add(self, *, question: str, answer: str, source: str) -> str:
        """Add (or replace) the passage answering `question`; its key.

        INVALID_ARGUMENT for an empty or too long question, answer or source.
        """
        question, answer, source = (
            _checked("question", question, MAX_QUESTION_CHARS),
            _checked("answer", answer, MAX_ANSWER_CHARS),
            _checked("source", source, MAX_SOURCE_CHARS),
        )
        key = passage_key(question)
        added_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        doc = {"question": question, "answer": answer, "source": source, "addedAt": added_at}
        try:
            await self._kv.put(key, json.dumps(doc).encode())
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
            raise Unavailable(f"cannot add the passage to the knowledge base: {exc!r}") from exc
        log.info("passage added to the knowledge base", key=key, source=source)
        return key

    async def remove(self, key: str) -> None:
        """Take the passage under `key` out of every replica's knowledge (none there: no-op)."""
        try:
            await self._kv.delete(key)
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
            raise Unavailable(f"cannot remove the passage: {exc!r}") from exc

    async def start(self, learn: Learn) -> None:
        """Hand `learn` every passage in the bucket, then each change as it comes.

        Returns once the bucket's current passages are handed over.
        """

        def apply(key: str, value: bytes | None) -> None:
            if value is None:
                learn(key, None)
                return
            passage = _passage(key, value)
            if passage is not None:
                learn(key, passage)

        self._watcher = await kv_watch.follow(self._kv, apply)

    async def stop(self) -> None:
        await kv_watch.stop(self._watcher)
        self._watcher = None


def _checked(name: str, value: str, max_chars: int) -> str:
    stripped = value.strip()
    if not stripped:
        raise InvalidArgument(f"the passage's {name} is empty", details={"param": name})
    if len(stripped) > max_chars:
        raise InvalidArgument(
            f"the passage's {name} is {len(stripped)} characters; at most {max_chars} are kept",
            details={"param": name},
        )
    return stripped


def _passage(key: str, value: bytes) -> Passage | None:
    """The passage a document describes; None (logged) if it does not read as one."""
    try:
        doc = json.loads(value)
        question, answer, source = doc["question"], doc["answer"], doc["source"]
    except (ValueError, KeyError, TypeError) as exc:
        log.error("knowledge passage ignored: not a passage document", key=key, error=repr(exc))
        return None
    if not all(isinstance(v, str) and v.strip() for v in (question, answer, source)):
        log.error("knowledge passage ignored: question, answer and source must be text", key=key)
        return None
    return Passage(answer=answer, source=source, question=question, key=key)
