"""CodePurify's statistics, presets, fixes and premise (issue 24) against oracles: the softmax
entropy bound as a seeded property test, closed-form statistics and AUROCs, planted victims whose
element scores are known, golden truncation offsets."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from _planted import CLEAN_JAVA, TRIGGER, FixedInfiller, PlantedSeq2SeqVictim
from _purifier_rows import purifier_row

from dece.data import Example
from dece.defenses import CodePurify, get_defense
from dece.defenses.code_elements import extract_elements, truncation_cutoff
from dece.defenses.codepurify import REVISION
from dece.defenses.codepurify_stats import (
    PRESETS,
    auroc,
    premise_metrics,
    softmax_entropy_floor,
    suspicion_entropy,
    suspicion_statistic,
    trigger_share,
)
from dece.experiments.markdown import md_unpadded
from dece.pipeline.data import DataBundle
from dece.pipeline.evaluation import evaluate

pytest.importorskip("tree_sitter_java")

SELECTION = (Path(__file__).parents[2] / "benchmarks" / "results"
             / "codepurify_premise_selection.json")  # fmt: skip

POISONED = CLEAN_JAVA[2].replace("output", TRIGGER)


# ------------------------------------------------------------------------------ the bound
@pytest.mark.parametrize("n", [2, 3, 4, 7, 16, 50])
def test_softmax_entropy_of_unit_scores_is_pinned_near_log_n(n):
    """Property: any N >= 2 scores in [0, 1] give ln N - 0.1234 < floor(N) <= H <= ln N (seeded
    uniform draws, cube vertices and sparse spikes); the floor is the vertex minimum."""
    rng = np.random.default_rng(n)
    draws = [rng.uniform(0, 1, n) for _ in range(400)]
    draws += [rng.integers(0, 2, n).astype(float) for _ in range(100)]
    draws += [np.eye(n)[0], np.zeros(n), np.ones(n)]
    floor = softmax_entropy_floor(n)
    assert math.log(n) - 0.1234 < floor < math.log(n)
    for s in draws:
        h = suspicion_entropy(s, "softmax")
        assert floor - 1e-12 <= h <= math.log(n) + 1e-12
    assert min(suspicion_entropy(s, "softmax") for s in draws) == pytest.approx(floor, abs=0.02)


def test_two_elements_floor_is_the_closed_form_and_t01_is_unreachable():
    p = math.e / (1 + math.e)
    closed = -(p * math.log(p) + (1 - p) * math.log(1 - p))
    assert softmax_entropy_floor(2) == pytest.approx(closed)
    assert closed == pytest.approx(0.5822, abs=1e-4)  # the paper's t = 0.1 is never reached


@pytest.mark.parametrize("score", [0.0, 0.3, 1.0, 7.0])
def test_one_element_has_zero_entropy_and_is_not_judged(score):
    assert suspicion_entropy([score], "softmax") == 0.0
    assert suspicion_entropy([score], "sum") == 0.0 or score == 0.0
    assert suspicion_statistic([score], "entropy") == -math.inf
    assert suspicion_statistic([score], "entropy_gap") == -math.inf
    assert suspicion_statistic([score], "max_delta") == score  # one element: still a score
    assert softmax_entropy_floor(1) == 0.0


# ------------------------------------------------------------------------------ statistics
def test_statistics_closed_forms():
    s = np.array([0.1, 0.7, 0.2])
    h = suspicion_entropy(s, "sum")
    assert suspicion_statistic(s, "entropy", "sum") == pytest.approx(-h)
    assert suspicion_statistic(s, "entropy_gap", "sum") == pytest.approx(math.log(3) - h)
    assert suspicion_statistic(s, "max_delta") == 0.7
    assert suspicion_statistic([], "max_delta") == -math.inf
    with pytest.raises(ValueError, match="statistic"):
        suspicion_statistic(s, "variance")


def test_auroc_matches_mann_whitney_with_ties_and_infinities():
    assert auroc([3.0, 4.0], [1.0, 2.0]) == 1.0
    assert auroc([1.0], [1.0]) == 0.5
    assert auroc([2.0, -math.inf], [1.0, -math.inf]) == pytest.approx((1 + 1 + 0 + 0.5) / 4)
    assert auroc([], [1.0]) is None
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1, 1, 50), rng.normal(0, 1, 60)
    naive = np.mean([(p > q) + 0.5 * (p == q) for p in pos for q in neg])
    assert auroc(pos, neg) == pytest.approx(naive)


def test_trigger_share_sums_the_overlapping_elements():
    spans = [[("source", 0, 3)], [("source", 10, 14), ("source", 20, 24)], [("pair", 10, 14)]]
    truth = [{"side": "source", "start": 12, "end": 30}]
    assert trigger_share([0.1, 0.6, 0.3], spans, truth) == pytest.approx(0.6)
    assert trigger_share([0.0, 0.0, 0.0], spans, truth) is None


# ------------------------------------------------------------------------------ presets
def test_presets_set_their_arguments_and_explicit_ones_override():
    paper = CodePurify(preset="paper")
    official = CodePurify(preset="official")
    defect = CodePurify(preset="official_defect")
    for cp, name in ((paper, "paper"), (official, "official"), (defect, "official_defect")):
        assert {k: getattr(cp, k) for k in PRESETS[name]} == PRESETS[name]
    assert defect.score == "delta" and defect.victim_mask == "unk" and defect.threshold == 0.1
    assert official.threshold == 0.1 and official.normalisation == "sum"
    assert paper.victim_statement == "keep" and paper.statistic == "entropy"
    assert CodePurify(preset="paper", normalisation="sum").normalisation == "sum"
    assert CodePurify(preset="official", threshold=0.3).threshold == 0.3
    # an argument equal to its default cannot be told from an absent one: the preset's wins
    assert CodePurify(preset="official", normalisation="softmax").normalisation == "sum"
    default = get_defense("codepurify")
    assert default.statistic == "entropy_gap" and default.victim_statement == "whole"


def test_default_statistic_is_the_one_declared_on_validation_inputs():
    """Golden: the default is what ``codepurify_premise.py --step0`` declared (the highest
    validation AUROC), and the declaration is that maximum."""
    selection = json.loads(SELECTION.read_text())["selection"]
    assert selection["declared"] == max(selection["auroc"], key=selection["auroc"].get)
    assert CodePurify().statistic == selection["declared"]
    with pytest.raises(ValueError, match="preset"):
        CodePurify(preset="authors")
    with pytest.raises(ValueError, match="statistic"):
        CodePurify(statistic="entropy_drop")


# ------------------------------------------------------------------------------ fixes
def test_victim_sees_the_whole_statement_and_the_infiller_keeps_keywords():
    code = "public void f ( ) { int VAR = 0 ; }"
    (stmt,) = [e for e in extract_elements(code, "java") if e.text == "int VAR = 0 ;"]
    victim = PlantedSeq2SeqVictim()
    ex = Example("x", code, "")
    whole = CodePurify(infiller=FixedInfiller()).masked(ex, stmt, victim).source
    keep = CodePurify(infiller=FixedInfiller(), victim_statement="keep").masked(ex, stmt, victim)
    mask = victim.tokenizer.mask_token
    assert whole == "public void f ( ) { " + mask + " }"
    assert keep.source == f"public void f ( ) {{ int {mask} {mask} {mask} {mask} }}"
    assert [code[a:b] for a, b in stmt.mask_spans] == ["VAR", "=", "0", ";"]  # the infiller's
    # an identifier is masked at every occurrence whatever victim_statement says
    (ident,) = [e for e in extract_elements(code, "java") if e.text == "VAR"]
    for setting in ("whole", "keep"):
        purifier = CodePurify(infiller=FixedInfiller(), victim_statement=setting)
        masked = purifier.masked(ex, ident, victim).source
        assert masked == f"public void f ( ) {{ int {mask} = 0 ; }}"


def test_single_element_inputs_are_left_out_of_the_entropy_test_and_counted():
    """Text inputs of one distinct word have N = 1 (H = 0): before the fix they set a 0
    threshold that the strict ``<`` never passes; now they are not judged, and the threshold
    comes from the N >= 2 inputs."""
    victim = PlantedSeq2SeqVictim()
    ones = [Example(f"o{i}", w, "") for i, w in enumerate(["alpha", "beta", "gamma"])]
    many = [Example(f"m{i}", " ".join(["w"] * (i % 2) + ["x", f"y{i}", "z"]), "")
            for i in range(7)]  # fmt: skip
    cp = CodePurify(infiller=FixedInfiller(), statistic="entropy", language="text",
                    clean_fraction=0.2)  # fmt: skip
    threshold = cp.calibrate(ones + many, victim)
    assert cp._calibration_unjudged == 3
    entropies = sorted(a.entropy for a in cp.analyse(many, victim))
    assert threshold == pytest.approx(entropies[1])  # floor(0.2 * 7) = 1: the 2nd smallest
    result = cp.purify(ones + many, victim)
    assert not result.detected[:3].any() and result.info["n_unjudged"] == 3
    assert np.isneginf(result.scores[:3]).all() and len(result.scores) == 10


def test_elements_past_the_truncation_are_skipped_not_scored():
    victim = PlantedSeq2SeqVictim()
    text = CLEAN_JAVA[1]
    ids = victim.tokenizer(text)["input_ids"]
    victim.max_source_length = 12
    cut = truncation_cutoff(victim.tokenizer, text, 12)
    enc = victim.tokenizer(text, truncation=True, max_length=12, return_offsets_mapping=True)
    assert len(ids) > 12 and cut == max(e for s, e in enc["offset_mapping"] if e > s)
    assert truncation_cutoff(victim.tokenizer, text, len(ids)) == math.inf
    cp = CodePurify(infiller=FixedInfiller(), cache=False)
    (a,) = cp.analyse([Example("x", text, "")], victim)
    every = cp.elements(Example("x", text, ""))
    assert [e.text for e in a.elements] == [e.text for e in every if e.spans[0][0] < cut]
    assert 0 < len(a.elements) < len(every)


# ------------------------------------------------------------------------------ premise
def test_max_delta_detects_where_the_length_bound_hides_the_trigger():
    """The planted trigger moves the confidence by 0.8 (clean inputs: < 1e-3); max_delta flags
    it at any threshold in between, for every row in input order."""
    victim = PlantedSeq2SeqVictim()
    rows = [Example("c0", CLEAN_JAVA[0], ""), Example("p", POISONED, ""),
            Example("c1", CLEAN_JAVA[2], "")]  # fmt: skip
    result = CodePurify(infiller=FixedInfiller(), threshold=0.1, statistic="max_delta").purify(
        rows, victim
    )
    assert result.detected.tolist() == [False, True, False]
    assert result.scores[1] == pytest.approx(0.8) and result.scores[[0, 2]].max() < 1e-3
    assert result.info["statistic"] == "max_delta" and result.info["revision"] == REVISION


def test_evaluate_records_the_premise_of_a_codepurify_cell():
    valid = [Example(f"v{i}", src, src) for i, src in enumerate(CLEAN_JAVA)]
    test = [Example(f"t{i}", src, src) for i, src in enumerate(CLEAN_JAVA)]
    bundle = DataBundle.from_examples(
        [], valid, test, trigger="identifier", payload="infinite_loop", seed=3
    )
    m = evaluate(PlantedSeq2SeqVictim(), bundle,
                 purifier=CodePurify(infiller=FixedInfiller(), clean_fraction=0.0)).metrics  # fmt: skip
    assert m["premise_conf_triggered_median"] == pytest.approx(0.9)  # 0.1 + 0.4 * 2 occurrences
    assert m["premise_conf_triggered_share_098"] == 0.0
    assert m["premise_conf_clean_median"] == pytest.approx(0.5, abs=1e-3)
    assert m["premise_auroc_max_delta"] == 1.0 and m["localisation_top"] == 1.0
    assert 0.0 < m["premise_trigger_share"] <= 1.0
    assert m["purify_revision"] == REVISION and m["purify_statistic"] == "entropy_gap"
    assert m["purify_unjudged_clean"] == 0


def test_premise_metrics_closed_form():
    clean = {"confidence": [0.5, 0.99, 0.7], "statistics": {"max_delta": [0.1, 0.2, 0.3]},
             "scores": [], "element_spans": []}  # fmt: skip
    pois = {
        "confidence": [0.99, 0.98],
        "statistics": {"max_delta": [0.25, 0.9]},
        "scores": [[0.5, 0.5], [0.0, 0.0]],
        "element_spans": [[[("source", 0, 2)], [("source", 5, 8)]], [[("source", 0, 1)]]],
    }
    spans = {"a": [{"side": "source", "start": 6, "end": 7}], "b": []}
    out = premise_metrics(clean, pois, ["a", "b"], spans)
    assert out["premise_conf_triggered_median"] == pytest.approx(0.985)
    assert out["premise_conf_triggered_share_098"] == 1.0
    assert out["premise_conf_clean_share_098"] == pytest.approx(1 / 3)
    assert out["premise_trigger_share"] == 0.5  # b has no mass: left out
    assert out["premise_auroc_max_delta"] == pytest.approx(5 / 6)  # 0.25 beats 2 of 3, 0.9 all


# ------------------------------------------------------------------------------ revisions
def _row(order: int, final: dict):
    return purifier_row("codepurify", f"CodePurify {order}", final, order)


def test_reports_label_archived_cells_and_refuse_mixed_revisions():
    from dece.experiments.purifier_tables import check_revisions, purifier_report, revision

    base = {"asr": 0.5, "detect_tpr": 0.5, "detect_fpr": 0.05, "localisation_top": 0.9,
            "purify_score": "delta", "purify_normalisation": "sum"}  # fmt: skip
    old = _row(1, base)  # archived: no revision recorded
    new = _row(2, {**base, "purify_revision": REVISION, "premise_auroc_max_delta": 0.99,
                   "premise_trigger_share": 0.49, "premise_conf_triggered_median": 0.735})  # fmt: skip
    assert revision(old) == 1 and revision(new) == REVISION
    old_report = md_unpadded(purifier_report([old]))
    # the archived cell is labelled revision 1 (threshold: recorded by no cell, so no column)
    assert old_report.split("## Purifier settings")[1].strip().splitlines()[-1] == (
        "| CE w. CodePurify 1 | DeadCode | sum | delta | 1 |"
    )
    text = md_unpadded(purifier_report([new]))
    assert "AUROC max_delta" in text and "| 0.49 |" in text and "99.00" in text
    assert "conf trig. median in [0, 1]" in text and "0-100" not in text  # not BLEU's scale
    with pytest.raises(ValueError, match=rf"revisions \[1, {REVISION}\]"):
        check_revisions([old, new])
    with pytest.raises(ValueError, match="revisions"):
        purifier_report([old, new])
