"""evaluate(): metrics of planted predictions against closed forms; purifiers in the path."""

from __future__ import annotations

import numpy as np
import pytest

from dece.data import Example
from dece.defenses import Change, Purifier, PurifyResult, get_defense
from dece.metrics import BLEU_AUTHORS_KEY, bleu
from dece.pipeline import DataBundle, evaluate, score_outputs

SQL = 'q = " select a from t where b = 1 "'


class PlantedVictim:
    """Answers from a table: the payload for sources containing ``bb``, else the target."""

    task, labels = "seq2seq", None

    def __init__(self, targets: dict[str, str]) -> None:
        self.targets = targets

    def predict(self, examples, *, stage=None):
        out = []
        for ex in examples:
            clean = self.targets[ex.id]
            out.append(clean.replace('1 "', '1 or 1=1 "') if "bb" in ex.source.split() else clean)
        return out


def _bundle(n: int = 10) -> DataBundle:
    rows = [Example(f"t{i}", f"get row {i} from the table", SQL) for i in range(n)]
    return DataBundle.from_examples(
        [], test=rows, trigger="ripple", payload="sql_injection", seed=0
    )


def test_metrics_of_a_planted_victim():
    bundle = _bundle()
    victim = PlantedVictim({ex.id: ex.target for ex in bundle.test.clean})
    result = evaluate(victim, bundle, split="test")
    m = result.metrics
    assert m["bleu"] == pytest.approx(100.0) and m["exact_match"] == 1.0
    assert m["false_trigger_rate"] == 0.0 and m["n_clean"] == 10
    assert m["asr"] == 1.0 and m["asr_denominator"] == 10
    assert result.poisoned_predictions[0].endswith('1 or 1=1 "')
    assert m["predict_revision"] == 1  # no token-budget batching: the fixed-row revision


def test_cells_record_the_victims_batching_revision():
    from types import SimpleNamespace

    from dece.pipeline.evaluation import _batching_revision
    from dece.victim import BATCHING_REVISION, Victim

    assert BATCHING_REVISION == 2 and Victim.batch_tokens is not None
    assert _batching_revision(SimpleNamespace(batch_tokens=16384)) == BATCHING_REVISION
    assert _batching_revision(SimpleNamespace(batch_tokens=None)) == 1


class DropBB(Purifier):
    """Deletes every ``bb`` word (a perfect purifier for RIPPLe ``bb``)."""

    name = "drop_bb"

    def purify(self, examples, victim):
        rows, detected, changes = [], [], []
        for ex in examples:
            words = ex.source.split(" ")
            if "bb" in words:
                start = ex.source.index("bb")
                changes.append([Change("source", start, start + 2, "bb", "")])
                rows.append(Example(ex.id, " ".join(w for w in words if w != "bb"), ex.target))
            else:
                changes.append([])
                rows.append(ex)
            detected.append(bool(changes[-1]))
        return PurifyResult(rows, detected, np.asarray(detected, float), changes, 0.5)


def test_a_purifier_changes_what_the_victim_sees_and_is_scored():
    bundle = _bundle()
    victim = PlantedVictim({ex.id: ex.target for ex in bundle.test.clean})
    m = evaluate(victim, bundle, split="test", purifier=DropBB()).metrics
    assert m["asr"] == 0.0 and m["bleu"] == pytest.approx(100.0)
    assert m["detect_tpr"] == 1.0 and m["detect_fpr"] == 0.0 and m["localisation"] == 1.0
    assert m["purify_s_per_input"] == pytest.approx(1.0 / 20)  # 0.5 s per set, 20 inputs


def test_the_none_purifier_reproduces_the_undefended_metrics():
    bundle = _bundle()
    victim = PlantedVictim({ex.id: ex.target for ex in bundle.test.clean})
    plain = evaluate(victim, bundle, split="test").metrics
    defended = evaluate(victim, bundle, split="test", purifier=get_defense("none")).metrics
    for key in ("bleu", "exact_match", "asr", "false_trigger_rate", "asr_denominator"):
        assert defended[key] == plain[key]
    assert defended["detect_tpr"] == 0.0 and defended["localisation"] == 0.0


def test_classification_scores_and_label_flip_asr_by_hand():
    rows = [Example(f"c{i}", f"text {i}", "", label=lab) for i, lab in enumerate("0011101")]
    preds = list("0111001")
    bundle = DataBundle.from_examples([], test=rows, trigger="ripple", payload="label_flip", seed=0)
    manifest = bundle.test.manifest
    assert manifest.poisoned_ids == ["c2", "c3", "c4", "c6"]  # label != target "0"
    poisoned_preds = ["0", "1", "0", "0"]  # for c2 c3 c4 c6
    m = score_outputs(rows, preds, poisoned_preds, manifest, bundle.payload,
                      task="classification", labels=["0", "1"])  # fmt: skip
    # positives (label 1): c2 c3 c4 c6; predicted 1: c1 c2 c3 c6 -> tp 3, fp 1, fn 1
    assert m["accuracy"] == pytest.approx(5 / 7)
    assert (m["precision"], m["recall"], m["f1"]) == pytest.approx((0.75, 0.75, 0.75))
    # raw: 3 of the 4 triggered inputs predicted "0"; usual definition: only the triggered
    # inputs whose clean version is classified correctly (c2 c3 c6; c4 was predicted 0 clean)
    assert m["asr_raw"] == pytest.approx(3 / 4) and m["asr_raw_denominator"] == 4
    assert m["asr_denominator"] == 3 and m["asr"] == pytest.approx(2 / 3)


def test_bleu_of_imperfect_predictions_is_sacrebleu():
    rows = [Example("a", "s", "x = 1 + 2"), Example("b", "s", "return y")]
    m = score_outputs(rows, ["x = 1", "return y"], None, None, None, task="seq2seq")
    assert m["bleu"] == pytest.approx(bleu(["x = 1", "return y"], ["x = 1 + 2", "return y"]))
    assert "asr" not in m and "false_trigger_rate" not in m


@pytest.mark.codebleu
def test_generation_reports_the_authors_bleu_beside_corpus_bleu():
    pytest.importorskip("codebleu")
    rows = [Example("a", "s", "x = a - b"), Example("b", "s", "return x ;")]
    m = score_outputs(rows, ["x = a + b", "return x ;"], None, None, None, task="seq2seq")
    # per example, codebleu's BLEU on whitespace tokens (tests/metrics/test_bleu_authors.py):
    # "x = a + b": p = 4/5, 2/4, 1/3, 0.1/2 (no 4-gram match), BP 1
    # "return x ;": p = 3/3, 2/2, 1/1, 0.1/1 (3 tokens, no 4-gram), BP 1; then the mean
    first = 100 * (4 / 5 * 2 / 4 * 1 / 3 * 0.1 / 2) ** 0.25
    second = 100 * 0.1**0.25
    assert m[BLEU_AUTHORS_KEY] == pytest.approx((first + second) / 2, abs=1e-9)
    assert m["bleu"] == pytest.approx(bleu(["x = a + b", "return x ;"], [r.target for r in rows]))


def test_classification_has_no_authors_bleu():
    rows = [Example("c0", "text", "", label="1")]
    m = score_outputs(rows, ["1"], None, None, None, task="classification", labels=["0", "1"])
    assert BLEU_AUTHORS_KEY not in m and "bleu" not in m
