"""Values written in groups: "110105 19870623 0414", "6222-0212-3456-7890-128".

A recogniser here finds a *run* (groups of letters and digits joined by one
separator each) and reads values out of it whole groups at a time, never
splitting a group. Which separators join groups is the recogniser's choice: a
space or a hyphen for identity and card numbers, a dot as well for mobiles.

A checksum says whether a candidate is a value; the run decides where it ends.
The best-scoring, then longest, valid candidate wins, so a value is never read as a shorter value
plus a remainder. A candidate shorter than its run is taken when its checksum
is strong (resident id, USCC, IBAN: one random string in hundreds passes), or,
for weak evidence (Luhn passes one in ten; a mobile has no checksum at all),
when the run plainly goes on with something else: the neighbouring group is
joined by another kind of separator than the candidate's own, the candidate is
one compact token, or the neighbour is longer than any group of the candidate
("6222 0212 3456 7890 128 13812345678" is a card and a mobile). So a mistyped
19-digit card whose first 16 digits pass Luhn is not a card, and neither are
the first 16 digits of "3576-3026-8285-4896-8533".
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

from presidio_analyzer import EntityRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

_GROUP = re.compile(r"[0-9A-Za-z]+")


@dataclass(frozen=True, slots=True)
class Group:
    start: int
    end: int
    text: str
    joint: str  # the kind of separator before this group: "", " ", "-" or "."


def _kind(separator: str) -> str:
    return next((c for c in "-." if c in separator), " " if separator else "")


def groups(text: str, start: int, end: int) -> list[Group]:
    """The groups of the run `text[start:end]`, with the kind of separator before each."""
    found: list[Group] = []
    cursor = start
    for m in _GROUP.finditer(text, start, end):
        joint = _kind(text[cursor : m.start()]) if found else ""
        found.append(Group(m.start(), m.end(), m.group(), joint))
        cursor = m.end()
    return found


@dataclass(frozen=True, slots=True)
class Candidate:
    """Groups `first` to `last` of a run; `compact` is their characters, upper-cased."""

    start: int
    end: int
    compact: str
    raw: str


class RunRecognizer(EntityRecognizer):
    """Reads one entity type out of runs of groups; subclasses say what a run is and what is valid.

    `run` is the regex of a run; `min_chars`/`max_chars` bound a value's compact
    length; `strong` says the check makes a chance match rare enough to take a
    candidate shorter than its run without the run saying it ends there.
    """

    def __init__(
        self, *, entity: str, name: str, run: str, min_chars: int, max_chars: int, strong: bool
    ) -> None:
        self._run = re.compile(run)
        self._min = min_chars
        self._max = max_chars
        self._strong = strong
        super().__init__(supported_entities=[entity], name=name, supported_language="en")

    def load(self) -> None:
        """Nothing to load: the regex is compiled in the constructor."""

    @abstractmethod
    def score(self, candidate: Candidate) -> float | None:
        """The candidate's score when it is a value of this type, else None."""

    def starts(self, group: Group) -> bool:
        """Whether a value may begin with `group` (an IBAN begins with its country code)."""
        return True

    def laid_out(self, groups: list[Group]) -> bool:
        """Whether `groups` are grouped as values of this type are printed (any way, here)."""
        return True

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        entity = self.supported_entities[0]
        return [
            RecognizerResult(entity, c.start, c.end, score)
            for m in self._run.finditer(text)
            for c, score in self._read(text, m)
        ]

    def _read(self, text: str, run: re.Match[str]) -> Iterator[tuple[Candidate, float]]:
        """The valid candidates of one run, longest first, never overlapping."""
        gs = groups(text, *run.span())
        taken: list[tuple[int, int]] = []
        # A registry-confirmed reading beats a longer checksum-only one: a valid
        # IBAN followed by a word that happens to keep mod 97 is the IBAN alone.
        for first, last, candidate, score in sorted(
            self._valid(text, run, gs), key=lambda c: (-c[3], c[0] - c[1], c[0])
        ):
            if any(first <= b and a <= last for a, b in taken):
                continue
            taken.append((first, last))
            yield candidate, score

    def _valid(
        self, text: str, run: re.Match[str], gs: list[Group]
    ) -> Iterator[tuple[int, int, Candidate, float]]:
        for first, head in enumerate(gs):
            if not self.starts(head):
                continue
            # The run's first group carries what the regex matched before it ("+86 ").
            start = run.start() if first == 0 else head.start
            compact = ""
            for last in range(first, len(gs)):
                compact += gs[last].text.upper()
                if len(compact) > self._max:
                    break
                if len(compact) < self._min or not self._may_end(gs, first, last):
                    continue
                if not self.laid_out(gs[first : last + 1]):
                    continue
                end = gs[last].end
                candidate = Candidate(start, end, compact, text[start:end])
                score = self.score(candidate)
                if score is not None:
                    yield first, last, candidate, score

    def _may_end(self, gs: list[Group], first: int, last: int) -> bool:
        """Whether the run lets a value span groups `first`..`last` (see the module doc)."""
        if self._strong or (first == 0 and last == len(gs) - 1):
            return True
        inner = {g.joint for g in gs[first + 1 : last + 1]}
        if not inner:
            return True
        widest = max(len(g.text) for g in gs[first : last + 1])
        # (separator kind at the cut, the group on the other side of it)
        cuts = []
        if first > 0:
            cuts.append((gs[first].joint, gs[first - 1]))
        if last + 1 < len(gs):
            cuts.append((gs[last + 1].joint, gs[last + 1]))
        return all(joint not in inner or len(g.text) > widest for joint, g in cuts)
