# Chinese messages use full-width punctuation and digits on purpose.
# ruff: noqa: RUF001
"""PII recall and precision per entity type, and what one analysis costs.

Runs the engine (in this process, no service around it) over the two labelled
corpora of tests/security: the base corpus (2400 sentences, Chinese and
English, values in their common forms, decoys with wrong check digits) and the
variant corpus (every type spaced, dashed, lower-case and full-width, beside
hard negatives: dates, times, amounts, order numbers, look-alikes). A finding
counts only with the right type and the exact span.

Then the latency of `PiiEngine.analyze` on typical messages: CPU time of one
call (best of 5 repeats of 200 calls), so that other load on a shared machine
does not count.

Writes bench/results/pii_recall.json and bench/results/pii_recall.png; prints
the tables. Exits 1 when a type's recall is below 1 or precision below 0.99.
`--latency-only` skips the corpora (to compare two trees quickly: run it with
PYTHONPATH=<another tree>/services/security, alternating).

    .venv/bin/python bench/pii_recall.py [--latency-only]
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loadgen import machine

# The corpora live in tests/security, a package named like bench/security.py:
# read them with tests/ in place of bench/ on the path.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [str(_BENCH.parent / "tests")] + [p for p in sys.path if Path(p).resolve() != _BENCH]

from security.pii_corpus import build_corpus  # noqa: E402 (after the path fix above)
from security.pii_variants import Tally, build_variant_corpus, tally  # noqa: E402

from edgegate_security.pii import Entity, PiiEngine  # noqa: E402

RESULTS = Path(__file__).parent / "results"
RECALL_FLOOR = 1.0
PRECISION_FLOOR = 0.99
MESSAGES = {
    "plain chat line": "Summarise the attached meeting notes in three bullet points, please.",
    "English, mobile + e-mail": (
        "Call me on 13812345678 or mail li.lei@example.com about the invoice."
    ),
    "Chinese, mobile + e-mail + id": (
        "客户手机13812345678，邮箱bob@example.com，身份证11010519491231002X。"
    ),
    "Chinese, four written-out values": (
        "客户手机１３８ １２３４ ５６７８，身份证110105 19870623 0414，"
        "IBAN de89 3704 0044 0532 0130 00，订单2024-0601-1234-5678。"
    ),
}


def cpu_us(call: Callable[[], object], *, calls: int = 200, repeats: int = 5) -> float:
    """CPU microseconds per call, the best of `repeats` runs of `calls`."""
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        for _ in range(calls):
            call()
        best = min(best, (time.process_time() - started) / calls)
    return round(best * 1e6, 1)


def print_table(name: str, result: Tally) -> None:
    print(f"\n{name}\n{'entity':<16}{'TP':>6}{'FP':>6}{'FN':>6}{'recall':>9}{'precision':>11}")
    for entity, row in result.table().items():
        print(
            f"{entity:<16}{row['tp']:>6}{row['fp']:>6}{row['fn']:>6}"
            f"{row['recall']:>9.4f}{row['precision']:>11.4f}"
        )


def plot(path: Path, tables: dict[str, dict[str, dict[str, Any]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entities = [str(e) for e in Entity]
    fig, axes = plt.subplots(1, len(tables), figsize=(7 * len(tables), 4.5), sharey=True)
    for ax, (name, table) in zip(axes, tables.items(), strict=True):
        xs = range(len(entities))
        ax.bar([x - 0.2 for x in xs], [table[e]["recall"] for e in entities], 0.4, label="recall")
        ax.bar(
            [x + 0.2 for x in xs], [table[e]["precision"] for e in entities], 0.4, label="precision"
        )
        ax.set_xticks(list(xs), entities, rotation=35, ha="right", fontsize=8)
        ax.set_ylim(0.9, 1.005)
        ax.set_title(name)
        ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    engine = PiiEngine(token_key=bytes(32), hash_salt=bytes(16))
    if "--latency-only" in sys.argv[1:]:
        for name, text in MESSAGES.items():
            print(f"{name:<32}{cpu_us(lambda text=text: engine.analyze(text)):>10.1f} us CPU")
        return 0
    corpora = {"base corpus": build_corpus(), "variant corpus": build_variant_corpus()}
    results = {}
    for name, samples in corpora.items():
        started = time.process_time()
        analysed = [engine.analyze(s.text) for s in samples]
        per_sentence_us = (time.process_time() - started) / len(samples) * 1e6
        results[name] = (tally(samples, analysed), len(samples), round(per_sentence_us, 1))
    latency = {
        name: cpu_us(lambda text=text: engine.analyze(text)) for name, text in MESSAGES.items()
    }
    report = {
        "machine": machine(),
        "corpora": {
            name: {"sentences": n, "analyze_cpu_us_per_sentence": us, "per_entity": r.table()}
            for name, (r, n, us) in results.items()
        },
        "analyze_cpu_us": latency,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pii_recall.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    plot(RESULTS / "pii_recall.png", {n: r.table() for n, (r, _, _) in results.items()})
    for name, (result, n, us) in results.items():
        print_table(f"{name}: {n} sentences, {us} us CPU per sentence", result)
    print("\nanalyze, CPU us per call:")
    for name, us in latency.items():
        print(f"  {name:<32}{us:>10.1f}")
    short = [
        f"{name}: {e}"
        for name, (r, _, _) in results.items()
        for e in Entity
        if r.recall(e) < RECALL_FLOOR or r.precision(e) < PRECISION_FLOOR
    ]
    if short:
        print("below the floors:", ", ".join(short))
    return 1 if short else 0


if __name__ == "__main__":
    sys.exit(main())
