"""The default assistant's knowledge base: passages from a folder, found by embedding similarity.

Every `.md` and `.txt` file in the folder is split into passages at blank
lines. A passage that opens with a question (its first line or sentence ends
with "?") keeps the question apart from its answer; so does a paragraph after
a heading, or a line of its own, that asks a question. The question is
embedded with the answer, because people's questions match a question best,
but the assistant says only the answer: repeating the question back reads
like an echo. The passages are embedded once with the default model; a
question is embedded the same way and answered with the closest passage, its
cosine score and its source (`file#n`). Below `min_score` there is no answer.

Passages people add while the gateway runs (an escalation's answer, say)
join a base with `with_passages`; each carries a `key`, so that adding it
again replaces it and `without` takes it out. A base never changes once
built: the assistant swaps in the new one, and a question being answered
meanwhile reads the old one whole.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SUFFIXES = (".md", ".txt")
_BLANK_LINES = re.compile(r"\n\s*\n")
# One sentence that is a question: no sentence ends before its "?".
_QUESTION = r"(?:[^.!?]|[.!?](?!\s))*\?"
_ONLY_A_QUESTION = re.compile(_QUESTION)
_OPENING_QUESTION = re.compile(rf"({_QUESTION})\s+(\S.*)")


@dataclass(frozen=True, slots=True)
class Passage:
    """One answer the assistant can give, and the question it answers if the file says one."""

    answer: str
    source: str  # "<file name>#<n>", n counting from 1; where an added passage came from
    question: str = ""
    key: str = ""  # an added passage's id: one passage per key; "" for the folder's

    @property
    def text(self) -> str:
        """What is embedded: the question, as people phrase it, then the answer."""
        return f"{self.question} {self.answer}" if self.question else self.answer


@dataclass(frozen=True, slots=True)
class Answer:
    passage: Passage
    score: float


def read_passages(folder: Path) -> list[Passage]:
    passages = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix in SUFFIXES and p.is_file()):
        text = path.read_text(encoding="utf-8", errors="replace")
        source = path.relative_to(folder)
        for n, (question, answer) in enumerate(split_passages(text), start=1):
            passages.append(Passage(answer=answer, source=f"{source}#{n}", question=question))
    return passages


def split_passages(text: str) -> list[tuple[str, str]]:
    """(question, answer) for each paragraph that has an answer; question "" if none is asked.

    A heading, or a paragraph that is one question and nothing else, asks the
    question of the paragraph after it; other headings only organise the file.
    """
    found: list[tuple[str, str]] = []
    asked = ""
    for chunk in _BLANK_LINES.split(text):
        lines = [" ".join(line.split()) for line in chunk.strip().splitlines()]
        headings = [line.lstrip("#").strip() for line in _leading_headings(lines)]
        body = lines[len(headings) :]
        if headings:
            asked = headings[-1] if headings[-1].endswith("?") else ""
        if not body:
            continue
        question, answer = _question_and_answer(body)
        if question and not answer:  # a question alone: the next paragraph answers it
            asked = question
            continue
        found.append((question or asked, answer))
        asked = ""
    return found


def _leading_headings(lines: list[str]) -> list[str]:
    count = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    return lines[:count]


def _question_and_answer(body: list[str]) -> tuple[str, str]:
    """The body's opening question (its first line, or its first sentence) and the rest."""
    if len(body) > 1 and body[0].endswith("?"):
        return body[0], " ".join(body[1:])
    joined = " ".join(body)
    if _ONLY_A_QUESTION.fullmatch(joined):
        return joined, ""
    opening = _OPENING_QUESTION.fullmatch(joined)
    return (opening[1], opening[2]) if opening else ("", joined)


class KnowledgeBase:
    def __init__(self, passages: list[Passage], vectors: np.ndarray, *, min_score: float) -> None:
        if len(passages) != len(vectors):
            raise ValueError(f"{len(passages)} passages but {len(vectors)} vectors")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self.passages = passages
        self._vectors = vectors / np.where(norms == 0, 1, norms)
        self.min_score = min_score

    def best(self, question: np.ndarray) -> Answer | None:
        """The closest passage, if its cosine similarity reaches `min_score`."""
        if not self.passages:
            return None
        norm = float(np.linalg.norm(question)) or 1.0
        scores = self._vectors @ (question / norm)
        i = int(np.argmax(scores))
        score = float(scores[i])
        return Answer(self.passages[i], score) if score >= self.min_score else None

    def with_passages(self, passages: Sequence[Passage], vectors: np.ndarray) -> KnowledgeBase:
        """A new base: this one's passages and `passages` (with their `vectors`) after them.

        A passage whose key is already here replaces the one before.
        """
        if len(passages) != len(vectors):
            raise ValueError(f"{len(passages)} passages but {len(vectors)} vectors")
        if not passages:
            return self
        kept = self.without({p.key for p in passages if p.key})
        if not kept.passages:  # nothing to stack on (an empty base's vectors have no width)
            return KnowledgeBase(list(passages), vectors, min_score=self.min_score)
        return KnowledgeBase(
            [*kept.passages, *passages],
            np.concatenate([kept._vectors, vectors]),
            min_score=self.min_score,
        )

    def without(self, keys: Collection[str]) -> KnowledgeBase:
        """A new base without the passages that carry one of `keys` (itself if none does)."""
        rows = [i for i, p in enumerate(self.passages) if not (p.key and p.key in keys)]
        if len(rows) == len(self.passages):
            return self
        return KnowledgeBase(
            [self.passages[i] for i in rows], self._vectors[rows], min_score=self.min_score
        )
