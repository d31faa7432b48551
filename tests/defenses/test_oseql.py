"""OSeqL against oracles: a planted classifier whose confidence collapses only when the trigger
line is occluded; the modified z-score in closed form; generation victims refused."""

from __future__ import annotations

import numpy as np
import pytest
from _planted import PlantedClassifier, PlantedSeq2SeqVictim

from dece.data import Example
from dece.defenses import OSeqL
from dece.defenses.oseql import line_spans, outlier_score

CLEAN = "int f ( int a ) {\n  int b = a ;\n  b ++ ;\n  g ( b ) ;\n  return b ;\n}"
POISONED = CLEAN.replace("  b ++ ;\n", "  b ++ ;\n  int bb_trigger = 0 ;\n")


def test_outlier_score_closed_form():
    d = np.array([0.0, 0.1, 0.2, 1.0])
    med = np.median(d)  # 0.15
    mad = np.median(np.abs(d - med))  # median of 0.15, 0.05, 0.05, 0.85 = 0.1
    assert outlier_score(d) == pytest.approx(0.6745 * (1.0 - med) / mad)
    assert outlier_score([0.2, 0.2, 0.2]) == 0.0
    assert outlier_score([0.0, 0.0, 0.5]) == float("inf")  # zero MAD, one line stands out
    assert line_spans("a\n\n  b\n") == [(0, 1), (3, 6)]


def test_oseql_removes_the_trigger_line_only():
    victim = PlantedClassifier()
    rows = [Example("p", POISONED, "", label="1"), Example("c", CLEAN, "", label="1")]
    result = OSeqL(threshold=3.5).purify(rows, victim)
    assert result.detected.tolist() == [True, False]
    assert result.examples[0].source == CLEAN
    (change,) = result.changes[0]
    assert (
        change.old == "  int bb_trigger = 0 ;" and POISONED[change.start : change.end] == change.old
    )
    assert result.examples[1] == rows[1]


def test_oseql_calibrates_and_refuses_generation_victims():
    victim = PlantedClassifier()
    clean = [Example(f"c{i}", CLEAN + "\n// x" * i, "", label="1") for i in range(10)]
    oseql = OSeqL(threshold=None, clean_fraction=0.0)
    threshold = oseql.calibrate(clean, victim)
    assert np.isfinite(threshold)
    assert oseql.purify([Example("p", POISONED, "", label="1")], victim).detected[0]
    with pytest.raises(ValueError, match="classification victims only"):
        OSeqL().purify([Example("p", POISONED, "")], PlantedSeq2SeqVictim())


def test_statement_unit_on_one_line_code():
    victim = PlantedClassifier()
    code = "void f ( ) { int a = 0 ; int bb_trigger = 1 ; a ++ ; g ( a ) ; }"
    oseql = OSeqL(threshold=3.5, unit="statement")
    assert [code[a:b] for a, b in oseql.units(code)] == [
        "int a = 0 ;",
        "int bb_trigger = 1 ;",
        "a ++ ;",
        "g ( a ) ;",
    ]
    result = oseql.purify([Example("p", code, "", label="1")], victim)
    assert result.examples[0].source == "void f ( ) { int a = 0 ; a ++ ; g ( a ) ; }"
