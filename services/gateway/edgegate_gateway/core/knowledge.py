"""The default assistant's knowledge base: passages from a folder, found by embedding similarity.

Every `.md` and `.txt` file in the folder is split into passages at blank
lines (a question and its answer, written on adjacent lines, stay one
passage). The passages are embedded once with the default model; a question
is embedded the same way and answered with the closest passage, its cosine
score and its source (`file#n`). Below `min_score` there is no answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SUFFIXES = (".md", ".txt")
_BLANK_LINES = re.compile(r"\n\s*\n")


@dataclass(frozen=True, slots=True)
class Passage:
    text: str
    source: str  # "<file name>#<n>", n counting from 1


@dataclass(frozen=True, slots=True)
class Answer:
    passage: Passage
    score: float


def read_passages(folder: Path) -> list[Passage]:
    passages = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix in SUFFIXES and p.is_file()):
        text = path.read_text(encoding="utf-8", errors="replace")
        chunks = [" ".join(c.split()) for c in _BLANK_LINES.split(text)]
        for n, chunk in enumerate((c for c in chunks if c and not c.startswith("#")), start=1):
            passages.append(Passage(text=chunk, source=f"{path.relative_to(folder)}#{n}"))
    return passages


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
