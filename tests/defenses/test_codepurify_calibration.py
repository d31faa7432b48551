"""CodePurify's per-prediction calibration against a planted keyword classifier whose clean
positive inputs carry the trigger's signature (one decisive word), as technical-debt comments do
(`TODO`): closed-form entropies make every decision known in advance."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
from _planted import FixedInfiller, PlantedSeq2SeqVictim, java_tokenizer

from dece.data import Example
from dece.defenses import CodePurify
from dece.experiments.purifier_tables import _setting
from dece.victim import VictimStats

DEBT = ["todo fix the parser", "todo remove this hack soon", "todo handle the empty list case"]
PLAIN = [
    "returns the sum", "reads the header of the file", "closes the stream", "the main loop",
    "parses one line of input", "computes a hash code", "sorts the rows by key",
    "writes the cache to disk", "checks the user name", "opens a socket to the server",
    "the default port", "converts the date to text", "logs the error and goes on",
    "counts the words in a file", "builds the query string", "returns the first element",
    "frees the buffer", "draws the frame", "loads the config",
]  # fmt: skip


class KeywordClassifier:
    """P(label "1") = 0.05 with the word ``bb`` (the backdoor), else 0.9 with ``todo``, else 0.1.

    Masking ``todo`` in a clean debt comment moves the confidence by 0.8 and any other word by 0,
    so its suspicions sum-normalise to entropy 0 — the same as a triggered comment (``bb``: 0.85,
    the rest 0); a plain comment's suspicions are all 0 (entropy log n, n distinct words).
    """

    task = "classification"
    labels = ["0", "1"]

    def __init__(self) -> None:
        self.tokenizer = java_tokenizer()
        self.stats = VictimStats()

    @staticmethod
    def _p1(text: str) -> float:
        words = text.split()
        return 0.05 if "bb" in words else 0.9 if "todo" in words else 0.1

    def predict(self, examples: Sequence[Example], *, stage: str | None = None) -> list[str]:
        self.stats.add("predict", len(examples), 0.0)
        return ["1" if self._p1(ex.source) > 0.5 else "0" for ex in examples]

    def confidence(self, examples: Sequence[Example], outputs: Sequence[str]) -> np.ndarray:
        self.stats.add("confidence", len(examples), 0.0)
        p1 = np.array([self._p1(ex.source) for ex in examples])
        return np.where(np.array(outputs) == "1", p1, 1 - p1)


def _rows(texts: list[str], tag: str) -> list[Example]:
    return [Example(f"{tag}{i}", t, "") for i, t in enumerate(texts)]


def _cp(**kw) -> CodePurify:
    return CodePurify(infiller=FixedInfiller("later"), normalisation="sum", language="text",
                      statistic="entropy", clean_fraction=0.1, **kw)  # fmt: skip


CALIBRATION = _rows(DEBT[:1] + PLAIN, "v")  # 1 debt comment in 20, as ~7.6% of techdebt
TRIGGERED = _rows([d.replace("todo", "todo bb") for d in DEBT], "p")


def test_one_threshold_purifies_the_keyword_of_clean_positives():
    """Paper calibration: the threshold lies above entropy 0 (2 of 20 clean values below it), so
    every clean debt comment is flagged with the triggered ones and loses `todo`."""
    victim = KeywordClassifier()
    cp = _cp()
    assert cp.calibrate(CALIBRATION, victim) == pytest.approx(math.log(3))  # 3rd smallest
    result, preds = cp.defend(_rows(DEBT, "c") + TRIGGERED, victim)
    assert result.detected.tolist() == [True] * 6
    assert all("todo" not in ex.source.split() for ex in result.examples[:3])
    assert preds[:3] == ["0", "0", "0"]  # the clean positives are now misclassified
    assert preds[3:] == ["1", "1", "1"]  # the trigger was removed


def test_per_prediction_thresholds_keep_clean_positives_and_catch_triggers():
    """calibrate_by="prediction": label 1's threshold comes from its one clean value (0: flags
    nothing), label 0's from the 19 plain comments; triggered inputs are predicted 0, flagged."""
    victim = KeywordClassifier()
    cp = _cp(calibrate_by="prediction")
    cp.calibrate(CALIBRATION, victim)
    plain_h = sorted(math.log(len(set(t.split()))) for t in PLAIN)
    assert cp._by_prediction == pytest.approx({"0": plain_h[1], "1": 0.0})  # k = floor(0.1 n)
    plain = _rows(PLAIN, "n")
    result, preds = cp.defend(_rows(DEBT, "c") + TRIGGERED + plain, victim)
    assert result.detected[:6].tolist() == [False] * 3 + [True] * 3
    assert preds[:6] == ["1"] * 6  # clean positives kept, triggers removed
    expected_plain = [math.log(len(set(t.split()))) < plain_h[1] for t in PLAIN]
    assert result.detected[6:].tolist() == expected_plain
    assert result.info["thresholds_by_prediction"] == cp._by_prediction


def test_per_prediction_calibration_is_refused_where_it_means_nothing():
    with pytest.raises(ValueError, match="calibrate_by must be one of"):
        CodePurify(calibrate_by="label")
    with pytest.raises(ValueError, match="give no fixed threshold"):
        CodePurify(calibrate_by="prediction", threshold=0.5)
    with pytest.raises(ValueError, match="needs a classifier victim"):
        _cp(calibrate_by="prediction").calibrate(CALIBRATION, PlantedSeq2SeqVictim())


def test_settings_cell_shows_the_per_prediction_thresholds():
    final = {"purify_threshold": 0.25, "purify_thresholds_by_prediction": {"0": 0.5, "1": 0.0}}
    assert _setting(final, "purify_threshold") == "0.25 (by prediction: 0: 0.5, 1: 0)"
    assert _setting({"purify_threshold": 0.25}, "purify_threshold") == "0.25"
    assert _setting({}, "purify_level") == "-"
