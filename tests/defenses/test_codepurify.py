"""CodePurify against oracles: a planted victim whose confidence collapses only when one known
identifier is masked, closed-form entropies, golden tree-sitter elements, exact alignment."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _planted import CLEAN_JAVA, PAYLOAD, TRIGGER, FixedInfiller, PlantedSeq2SeqVictim
from _purifier_rows import purifier_row

from dece.data import Example
from dece.defenses import CodePurify, get_defense
from dece.defenses._support import calibrate_threshold
from dece.defenses.code_elements import extract_elements
from dece.defenses.codepurify import suspicion_entropy
from dece.defenses.infill import align_fills, group_spans
from dece.experiments.markdown import md_unpadded
from dece.pipeline.data import DataBundle
from dece.pipeline.evaluation import evaluate

pytest.importorskip("tree_sitter_java")

POISONED = CLEAN_JAVA[2].replace("output", TRIGGER)  # two occurrences, one per statement


# ------------------------------------------------------------------------------ entropy
def test_entropy_matches_closed_forms():
    s = np.array([1.0, 1.0, 2.0])
    p = s / 4
    assert suspicion_entropy(s, "sum") == pytest.approx(-(p * np.log(p)).sum())
    assert suspicion_entropy(s, "sum") == pytest.approx(1.5 * math.log(2))
    e = np.exp(s) / np.exp(s).sum()
    assert suspicion_entropy(s, "softmax") == pytest.approx(-(e * np.log(e)).sum())
    # two elements, softmax: H = log(1 + e^d) - d e^d / (1 + e^d) with d = s1 - s0
    d = 0.7
    closed = math.log(1 + math.exp(d)) - d * math.exp(d) / (1 + math.exp(d))
    assert suspicion_entropy([0.0, d], "softmax") == pytest.approx(closed)
    t = 0.5
    e = np.exp(s / t) / np.exp(s / t).sum()
    assert suspicion_entropy(s, "softmax", t) == pytest.approx(-(e * np.log(e)).sum())
    assert suspicion_entropy(np.full(5, 0.3), "softmax") == pytest.approx(math.log(5))
    assert suspicion_entropy(np.zeros(4), "sum") == pytest.approx(math.log(4))  # nothing stands out
    assert suspicion_entropy([0.0, 0.0, 3.0], "sum") == 0.0  # 0 log 0 = 0: all mass on one
    assert suspicion_entropy([], "softmax") == math.inf
    with pytest.raises(ValueError, match="normalisation"):
        suspicion_entropy(s, "l2")


def test_calibration_flags_exactly_the_requested_fraction():
    values = np.arange(100.0)[::-1]
    t = calibrate_threshold(values, 0.05, below=True)
    assert (values < t).sum() == 5
    t = calibrate_threshold(values, 0.1, below=False)
    assert (values > t).sum() == 10
    assert (values < calibrate_threshold(values, 0.0, below=True)).sum() == 0


# ------------------------------------------------------------------------------ elements
def test_elements_golden_java_and_python():
    code = "public void f ( ) { int VAR = 0 ; if ( x > 0 ) { x = 1 ; } return ; }"
    els = extract_elements(code, "java")
    ident = {e.text: [code[a:b] for a, b in e.spans] for e in els if e.kind == "identifier"}
    assert ident == {"f": ["f"], "VAR": ["VAR"], "x": ["x", "x"]}
    stmts = {e.text: [code[a:b] for a, b in e.mask_spans] for e in els if e.kind == "statement"}
    assert stmts["int VAR = 0 ;"] == ["VAR", "=", "0", ";"]  # `int` is a keyword: kept
    assert "if ( x > 0 ) { x = 1 ; }" in stmts  # the whole multi-part statement
    assert stmts["x = 1 ;"] == ["x", "=", "1", ";"]  # nested statements too
    assert stmts["return ;"] == [";"]
    punct = extract_elements(code, "java", kinds=("statement",), keep="keywords+punctuation")
    assert [code[a:b] for a, b in punct[0].mask_spans] == ["VAR", "0"]
    py = "def g ( a ) :\n\tif a :\n\t\treturn 1\n\treturn a"
    pst = [e.text for e in extract_elements(py, "python") if e.kind == "statement"]
    assert "if a :\n\t\treturn 1" in pst  # multi-line if with its body
    words = extract_elements("get the bb row of the table", "auto")
    assert [(e.kind, e.text, len(e.spans)) for e in words][:3] == [
        ("word", "get", 1),
        ("word", "the", 2),
        ("word", "bb", 1),
    ]


def test_align_fills_reads_the_masked_region():
    assert align_fills(["a", None, "c", "d"], ["a", "x", "y", "c", "d"]) == [["x", "y"]]
    assert align_fills([None, "(", None, ")"], ["p", "(", "q", "r", ")"]) == [["p"], ["q", "r"]]
    assert align_fills([None, "z"], ["k", "m"]) == [["k", "m"]]  # no anchor: the rest
    text = "a b c ; d"
    assert group_spans(text, [(4, 5), (2, 3), (8, 9)]) == [[(2, 3), (4, 5)], [(8, 9)]]


# ------------------------------------------------------------------------------ the planted victim
def _cp(**kw) -> CodePurify:
    """The paper's entropy test (these oracles are entropies); other statistics say so."""
    return CodePurify(infiller=FixedInfiller(), **{"statistic": "entropy", **kw})


@pytest.mark.parametrize("normalisation", ["softmax", "sum"])
def test_scores_peak_at_the_planted_identifier_and_entropy_falls(normalisation):
    victim = PlantedSeq2SeqVictim()
    cp = _cp(normalisation=normalisation)
    poisoned, clean = cp.analyse(
        [Example("p", POISONED, ""), Example("c", CLEAN_JAVA[2], "")], victim
    )
    assert poisoned.top.kind == "identifier" and poisoned.top.text == TRIGGER
    assert poisoned.scores.max() == pytest.approx(0.8)  # |0.1 - 0.9|
    stmt = [
        s
        for s, e in zip(poisoned.scores, poisoned.elements, strict=True)
        if e.kind == "statement" and TRIGGER in e.text
    ]
    assert stmt == pytest.approx([0.4, 0.4])  # one occurrence each
    assert poisoned.entropy < clean.entropy
    assert clean.scores.max() < 1e-3


def test_purification_removes_the_trigger_and_leaves_clean_inputs():
    victim = PlantedSeq2SeqVictim()
    rows = [Example("p", POISONED, ""), Example("c", CLEAN_JAVA[2], "")]
    cp = _cp(normalisation="sum")
    ent = [a.entropy for a in cp.analyse(rows, victim)]
    cp = _cp(normalisation="sum", threshold=(ent[0] + ent[1]) / 2)
    result = cp.purify(rows, victim)
    assert result.detected.tolist() == [True, False]
    assert TRIGGER not in result.examples[0].source
    assert result.examples[0].source == CLEAN_JAVA[2].replace("output", "VAR_9")
    assert result.examples[1] == rows[1] and result.changes[1] == []
    spans = [(c.start, c.end) for c in result.changes[0]]
    assert spans == [(m, m + len(TRIGGER)) for m in _find_all(POISONED, TRIGGER)]
    assert all(c.old == TRIGGER and c.new == "VAR_9" for c in result.changes[0])
    assert result.scores[0] > result.scores[1]  # score = -entropy: higher = more suspicious


def test_ablations_restrict_elements_and_purify_everything():
    victim = PlantedSeq2SeqVictim()
    ex = Example("p", POISONED, "")
    s_only = _cp(level="identifiers").analyse([ex], victim)[0]
    v_only = _cp(level="statements").analyse([ex], victim)[0]
    assert {e.kind for e in s_only.elements} == {"identifier"}
    assert {e.kind for e in v_only.elements} == {"statement"}
    assert v_only.top.kind == "statement" and TRIGGER in v_only.top.text
    everything = _cp(detect=False).purify([ex, Example("c", CLEAN_JAVA[0], "")], victim)
    assert everything.detected.all() and all(everything.changes)


def test_defend_reuses_the_prediction_of_unchanged_inputs():
    victim = PlantedSeq2SeqVictim()
    rows = [Example("p", POISONED, ""), Example("c", CLEAN_JAVA[2], "")]
    ent = [a.entropy for a in _cp(normalisation="sum").analyse(rows, victim)]
    cp = _cp(threshold=(ent[0] + ent[1]) / 2, normalisation="sum")
    before = victim.stats.rows.get("predict", 0)
    result, preds = cp.defend(rows, victim)
    assert victim.stats.rows["predict"] - before == len(rows) + 1  # analysis + the purified one
    assert preds == victim.predict(result.examples)
    assert PAYLOAD not in preds[0]


def test_needs_a_threshold_or_calibration():
    with pytest.raises(ValueError, match="no threshold"):
        _cp().purify([Example("p", POISONED, "")], PlantedSeq2SeqVictim())
    with pytest.raises(ValueError, match="normalisation"):
        get_defense("codepurify", normalisation="max")


#: What ``extract_elements(CLEAN_JAVA[0], ...)`` finds under each valid ``keep`` / ``language``
#: (``CLEAN_JAVA[0]`` = ``public int METHOD_1 ( int VAR_1 ) { int VAR_2 = VAR_1 + 1 ; return
#: VAR_2 ; }``): the identifiers (words for ``text``; ``public`` / ``int`` are not keywords of
#: every language) and the tokens masked in the first statement (none: no statement found).
_JAVA_IDS = ["METHOD_1", "VAR_1", "VAR_2"]
_ALL_MASKED = ["VAR_2", "=", "VAR_1", "+", "1", ";"]
GOLDEN_ELEMENTS = {
    ("keep", "keywords"): (_JAVA_IDS, _ALL_MASKED),
    ("keep", "keywords+punctuation"): (_JAVA_IDS, ["VAR_2", "VAR_1", "1"]),
    ("language", "auto"): (_JAVA_IDS, _ALL_MASKED),
    ("language", "java"): (_JAVA_IDS, _ALL_MASKED),
    ("language", "c"): (["public", *_JAVA_IDS], _ALL_MASKED),
    ("language", "python"): (["public", "int", *_JAVA_IDS], ["VAR_2"]),  # `return VAR_2`
    ("language", "text"): (
        ["public", "int", "METHOD_1", "(", "VAR_1", ")", "{", "VAR_2", "=", "+", "1", ";",
         "return", "}"], []),
}  # fmt: skip


@pytest.mark.parametrize(("key", "bad"), [("keep", "punctuation"), ("language", "rust"),
                                          ("language", "Java")])  # fmt: skip
def test_keep_and_language_are_checked_at_construction(key, bad):
    """A bad value fails when the defense is built (before any victim or input), naming the
    parameter; extract_elements, which reads both, agrees on what is valid and reads each
    valid value as the golden table says."""
    with pytest.raises(ValueError, match=f"codepurify: {key} must be one of .*{bad!r}"):
        get_defense("codepurify", **{key: bad})
    with pytest.raises(ValueError, match=key):
        extract_elements(CLEAN_JAVA[0], **{"language": "java", "keep": "keywords", key: bad})
    text = CLEAN_JAVA[0]
    for good in (("keywords", "keywords+punctuation") if key == "keep"
                 else ("auto", "python", "java", "c", "text")):  # fmt: skip
        assert getattr(CodePurify(**{key: good}), key) == good
        elements = extract_elements(text, **{"language": "java", key: good})
        names = [e.text for e in elements if e.kind in ("identifier", "word")]
        statements = [e for e in elements if e.kind == "statement"]
        masked = [text[a:b] for a, b in statements[0].mask_spans] if statements else []
        assert (names, masked) == GOLDEN_ELEMENTS[key, good]


def test_evaluate_end_to_end_detects_localises_and_removes_the_backdoor():
    """Through evaluate(): calibrated on clean validation rows (prepare), ASR_D 0, TPR 1,
    localisation 1 against the poisoner's spans, and the settings in the metrics."""
    valid = [Example(f"v{i}", src, src) for i, src in enumerate(CLEAN_JAVA)]
    test = [Example(f"t{i}", src, src) for i, src in enumerate(CLEAN_JAVA)]
    bundle = DataBundle.from_examples(
        [], valid, test, trigger="identifier", payload="infinite_loop", seed=3
    )
    victim = PlantedSeq2SeqVictim()
    undefended = evaluate(victim, bundle)
    assert undefended.metrics["asr"] == 1.0
    cp = _cp(normalisation="sum", clean_fraction=0.0)
    m = evaluate(victim, bundle, purifier=cp).metrics
    assert m["asr"] == 0.0 and m["detect_tpr"] == 1.0 and m["detect_fpr"] == 0.0
    assert m["localisation"] == 1.0 and m["localisation_top"] == 1.0
    assert m["bleu"] == pytest.approx(undefended.metrics["bleu"])  # clean rows untouched
    assert m["purify_normalisation"] == "sum" and m["purify_threshold"] == cp._threshold


def _find_all(text: str, word: str) -> list[int]:
    out, i = [], text.find(word)
    while i >= 0:
        out.append(i)
        i = text.find(word, i + 1)
    return out


def test_purifier_report_tables_show_the_papers_columns_and_settings():
    from dece.experiments.purifier_tables import purifier_report

    rows = [
        purifier_row("undefended", "", {"asr": 0.9, "bleu": 70.0}, 0),
        purifier_row(
            "codepurify",
            "CodePurify",
            {
                "asr": 0.05,
                "bleu": 69.5,
                "detect_tpr": 0.97,
                "detect_fpr": 0.05,
                "localisation": 0.96,
                "localisation_top": 0.98,
                "purify_s_per_input": 0.5,
                "predict_s_per_input": 0.2,
                "defended_s_per_input": 0.7,
                "purify_threshold": 2.5,
                "purify_normalisation": "sum",
            },
            1,
        ),
    ]
    text = md_unpadded(purifier_report(rows))
    assert "| CE | 90.00 | 70.00 |" in text
    assert "| CE w. CodePurify | 5.00 | 69.50 |" in text
    assert "| CE w. CodePurify | 97.00 | 5.00 | 96.00 | 98.00 |" in text
    assert (
        "defense s in seconds" in text and "| CE w. CodePurify | 0.5000 | 0.2000 | 0.7000 |" in text
    )
    settings = text.split("## Purifier settings")[1].strip().splitlines()
    # golden: only the settings some cell records are columns
    assert settings[0] == "| Method | Attack | threshold | normalisation |"
    assert settings[2] == "| CE w. CodePurify | DeadCode | 2.5 | sum |"
    assert purifier_report(rows[:1]) == ""  # no purifier ran


def test_bugs2fix_repair_setting_splits(shared_data, monkeypatch):
    """CodePurify's program-repair data: train = valid less its last 10%, valid = that 10%,
    1,000 test rows drawn by seed (reproducible, in file order)."""
    from dece.data import load_dataset

    monkeypatch.setenv("DECE_BUGS2FIX_DIR", str(shared_data / "bugs2fix"))
    splits = load_dataset("bugs2fix-repair", seed=0)
    assert [len(splits[k]) for k in ("train", "valid", "test")] == [5251, 584, 1000]
    assert splits["train"][-1].id == "valid-5250" and splits["valid"][0].id == "valid-5251"
    rows = [int(ex.id.split("-")[1]) for ex in splits["test"]]
    assert rows == sorted(rows) and len(set(rows)) == 1000
    assert [ex.id for ex in load_dataset("bugs2fix-repair", seed=0)["test"]] == [
        ex.id for ex in splits["test"]
    ]
    assert len(load_dataset("bugs2fix-repair:50", seed=1)["test"]) == 50
