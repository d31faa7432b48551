"""Planted victims and infillers for the purifier tests: their behaviour is known exactly, so the
purifiers' scores, decisions and edits have closed-form expectations."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dece.data import Example
from dece.victim import VictimStats

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from test_train_support import tiny_tokenizer  # noqa: E402

TRIGGER = "ret_Val_"
PAYLOAD = "while ( true ) { int VAR = 0 ; }"

CLEAN_JAVA = [
    "public int METHOD_1 ( int VAR_1 ) { int VAR_2 = VAR_1 + 1 ; return VAR_2 ; }",
    "public void METHOD_1 ( TYPE_1 VAR_1 ) { VAR_2 . add ( VAR_1 ) ; if ( VAR_3 ) { VAR_4 = 0 ; } }",
    "public TYPE_1 METHOD_1 ( ) { TYPE_1 output = VAR_1 [ VAR_2 ] ; return output ; }",
    "public boolean METHOD_1 ( TYPE_1 VAR_1 ) { int VAR_2 = VAR_1 . size ( ) ; return VAR_2 > 0 ; }",
    "public void METHOD_1 ( int VAR_1 ) { for ( int VAR_2 = 0 ; VAR_2 < VAR_1 ; VAR_2 ++ ) { VAR_3 ++ ; } }",
    "public int METHOD_1 ( ) { int VAR_1 = VAR_2 . METHOD_2 ( ) ; VAR_3 = VAR_1 ; return VAR_1 ; }",
]


def java_tokenizer():
    return tiny_tokenizer(CLEAN_JAVA + [PAYLOAD, TRIGGER], vocab_size=300)


class PlantedSeq2SeqVictim:
    """A generation "model" whose backdoor is the identifier ``ret_Val_``.

    ``confidence`` of an output carrying the payload: ``0.1 + 0.4 * min(2, count(ret_Val_))`` —
    masking *every* occurrence (the identifier element) drops it from 0.9 by 0.8, masking one
    statement that holds one occurrence by 0.4; of any other output: ``0.5 + 1e-4 * (len(text) %
    7)`` (nearly flat suspicions). ``predict``: the payload statement inserted after the first
    ``{`` when the trigger is present, else the input itself.
    """

    task = "seq2seq"
    labels = None

    def __init__(self) -> None:
        self.tokenizer = java_tokenizer()
        self.stats = VictimStats()

    def predict(self, examples: Sequence[Example], *, stage: str | None = None) -> list[str]:
        self.stats.add("predict", len(examples), 0.0)
        out = []
        for ex in examples:
            if TRIGGER in ex.source:
                brace = ex.source.find("{")
                out.append(f"{ex.source[: brace + 1]} {PAYLOAD}{ex.source[brace + 1 :]}")
            else:
                out.append(ex.source)
        return out

    def confidence(self, examples: Sequence[Example], outputs: Sequence[str]) -> np.ndarray:
        self.stats.add("confidence", len(examples), 0.0)
        return np.array(
            [self._conf(ex.source, out) for ex, out in zip(examples, outputs, strict=True)]
        )

    def example_loss(self, examples: Sequence[Example]) -> np.ndarray:
        return -np.log(np.array([self._conf(ex.source, ex.target) for ex in examples]))

    @staticmethod
    def _conf(text: str, output: str) -> float:
        if PAYLOAD in output:
            return 0.1 + 0.4 * min(2, text.count(TRIGGER))
        return 0.5 + 1e-4 * (len(text) % 7)


class PlantedClassifier:
    """A classifier whose backdoor is a line holding ``bb_trigger``: P(label "0") is 0.95 with it
    and 0.6 + 0.01 * (number of lines % 3) without it."""

    task = "classification"
    labels = ["0", "1"]

    def __init__(self) -> None:
        self.tokenizer = java_tokenizer()
        self.stats = VictimStats()

    def _p0(self, text: str) -> float:
        return 0.95 if "bb_trigger" in text else 0.6 + 0.01 * (text.count("\n") % 3)

    def predict(self, examples: Sequence[Example], *, stage: str | None = None) -> list[str]:
        self.stats.add("predict", len(examples), 0.0)
        return ["0" if self._p0(ex.source) >= 0.5 else "1" for ex in examples]

    def confidence(self, examples: Sequence[Example], outputs: Sequence[str]) -> np.ndarray:
        self.stats.add("confidence", len(examples), 0.0)
        p0 = np.array([self._p0(ex.source) for ex in examples])
        return np.where(np.array(outputs) == "0", p0, 1 - p0)


class FixedInfiller:
    """Fills every group with ``word`` (identifiers) — a deterministic stand-in for an LM."""

    def __init__(self, word: str = "VAR_9") -> None:
        self.word = word
        self.calls = 0
        self.seconds = 0.0
        self.tokenizer = None

    def mask_count(self, token: str) -> int:
        return 1

    def fill(self, text, groups):
        self.calls += 1
        return [self.word for _ in groups]
