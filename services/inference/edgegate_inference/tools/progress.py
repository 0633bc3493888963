"""Progress lines on stderr, so that stdout carries only the result.

Steps that take seconds say so as they start (`[2/4] quantizing weights…`);
loops that take longer count up in place on a terminal and, in a log, write
one line when they finish instead of one per step.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

T = TypeVar("T")


class Progress:
    """Numbered stage lines and in-place counters for one command."""

    def __init__(self, *, stages: int, stream: TextIO | None = None) -> None:
        self._stages = stages
        self._done = 0
        self._stream = stream if stream is not None else sys.stderr

    def stage(self, text: str) -> None:
        self._done += 1
        self._write(f"[{self._done}/{self._stages}] {text}…\n")

    def note(self, text: str) -> None:
        self._write(f"      {text}\n")

    def count(self, items: Iterable[T], *, label: str, total: int) -> Iterator[T]:
        """Yield `items`, showing `label k/total` as they pass."""
        live = self._stream.isatty()
        done = 0
        for item in items:
            yield item
            done += 1
            if live:
                self._write(f"\r      {label} {done}/{total}")
        self._write("\n" if live else f"      {label} {done}/{total}\n")

    def _write(self, text: str) -> None:
        self._stream.write(text)
        self._stream.flush()
