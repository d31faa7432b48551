"""Why CodePurify does or does not put the trigger first (issue 24, program-repair target): from
the per-element suspicion scores a CodePurify cell records for its triggered test inputs
(``purified/test_poisoned.jsonl``), where the trigger ranks and what outranks it.

Per cell: how many triggered inputs rank a trigger element first (ties with a non-trigger
element counted apart: a top-1 choice may pick either), second, third, lower, or do not score
it at all (e.g. cut off by truncation); for the inputs where it is not first, the kind of the
element that is (identifier / statement), the median score gap between that element and the
trigger, and the most frequent texts of those elements. The trigger spans come from the cell's
own data (its ``config.yaml``: the same seeded test split and manifest). Elements are the scored
units: the occurrences of one identifier share one score and count once.

It trains and scores nothing::

    python benchmarks/codepurify_ranking.py runs/codepurify_repair5/<cell> [...] \\
        [--out benchmarks/results/codepurify_ranking.md]
"""

from __future__ import annotations

import argparse
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dece._jsonl import read_jsonl
from dece.defenses.codepurify_stats import trigger_rank
from dece.experiments.markdown import md_table
from dece.metrics.detection import overlaps_span

POISONED_FILE = Path("purified") / "test_poisoned.jsonl"


def elements_of(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The scored elements of one purified row: its occurrence records grouped by (kind, text,
    score), each ``{"kind", "text", "score", "spans"}`` with ``spans`` its ``(side, start,
    end)`` triples."""
    texts = {"source": row.get("source") or "", "source_pair": row.get("source_pair") or ""}
    grouped: dict[tuple[str, str, float], list[tuple[str, int, int]]] = {}
    for e in row.get("elements") or []:
        side, start, end = str(e["side"]), int(e["start"]), int(e["end"])
        key = (str(e.get("kind", "")), texts.get(side, "")[start:end], float(e["score"]))
        grouped.setdefault(key, []).append((side, start, end))
    return [{"kind": k, "text": t, "score": s, "spans": v} for (k, t, s), v in grouped.items()]


def rank_summary(
    rows: Sequence[Mapping[str, Any]], spans: Mapping[str, Sequence[Mapping[str, Any]]]
) -> dict[str, Any]:
    """Counts over the triggered rows that have manifest spans (module docstring)."""
    ranks: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    texts: Counter[str] = Counter()
    gaps: list[float] = []
    for row in rows:
        truth = spans.get(str(row["id"]))
        if not truth:
            continue
        elements = elements_of(row)
        found = trigger_rank([e["score"] for e in elements], [e["spans"] for e in elements], truth)
        if found is None:
            ranks["not scored"] += 1
            continue
        rank, ties = found
        ranks["1 (tied)" if rank == 1 and ties else str(rank) if rank <= 3 else "4+"] += 1
        if rank > 1:
            top = max(elements, key=lambda e: e["score"])
            best_trigger = max(e["score"] for e in elements
                               if any(overlaps_span(*sp, truth) for sp in e["spans"]))  # fmt: skip
            kinds[top["kind"]] += 1
            texts[top["text"]] += 1
            gaps.append(top["score"] - best_trigger)
    return {"ranks": ranks, "top_kinds": kinds, "top_texts": texts,
            "median_gap": statistics.median(gaps) if gaps else None}  # fmt: skip


def _manifest_spans(cell: Path) -> dict[str, Any]:
    from dece.pipeline.data import prepare_data
    from dece.training.config import TrainConfig

    bundle = prepare_data(TrainConfig.from_yaml(cell / "config.yaml"))
    manifest = bundle.test.manifest
    return dict(manifest.spans) if manifest is not None else {}


def render(cell: Path, summary: Mapping[str, Any], top: int = 10) -> str:
    ranks = summary["ranks"]
    n = sum(ranks.values())
    order = ["1", "1 (tied)", "2", "3", "4+", "not scored"]
    body = [[k, str(ranks.get(k, 0)), f"{100 * ranks.get(k, 0) / n:.1f}" if n else "-"]
            for k in order]  # fmt: skip
    out = [f"### `{cell}`", "", f"{n} triggered test inputs with a trigger span.", "",
           md_table(["trigger rank", "inputs", "%"], body, "lrr")]  # fmt: skip
    if summary["top_kinds"]:
        gap = summary["median_gap"]
        out += ["", "Where the trigger is not first, the element that is first: "
                + ", ".join(f"{k} {v}" for k, v in summary["top_kinds"].most_common())
                + f"; median score gap to the trigger {gap:.4f}.", "",
                md_table(["most frequent first element", "inputs"],
                         [[f"`{t}`", str(c)] for t, c in summary["top_texts"].most_common(top)],
                         "lr")]  # fmt: skip
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("cells", type=Path, nargs="+", help="CodePurify cell directories")
    ap.add_argument("--out", type=Path, help="write the markdown here (default: stdout)")
    args = ap.parse_args(argv)
    parts = []
    for cell in args.cells:
        path = cell / POISONED_FILE
        if not path.is_file():
            raise SystemExit(f"{path}: no such file (is {cell} a finished CodePurify cell?)")
        parts.append(render(cell, rank_summary(read_jsonl(path), _manifest_spans(cell))))
    text = "\n\n".join(parts) + "\n"
    if args.out:
        args.out.write_text(text)
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
