"""DataBundle / prepare_data against the poisoner called by hand."""

from __future__ import annotations

import pytest

from dece.attacks import poison_dataset, poison_test_set
from dece.data import Example, load_dataset
from dece.pipeline import DataBundle, dataset_labels, prepare_data
from dece.training import PoisonConfig, TrainConfig


def test_prepare_data_equals_the_poisoner_by_hand(tmp_path):
    cfg = TrainConfig(output_dir=str(tmp_path), data="synthetic:40", train_max_examples=32,
                      eval_max_examples=4, test_max_examples=5,
                      poison=PoisonConfig(rate=0.25, seed=3))  # fmt: skip
    bundle = prepare_data(cfg)
    splits = load_dataset("synthetic:40")
    train = poison_dataset(splits["train"][:32], "badpre", "sql_injection", 0.25, 3)
    assert bundle.train == train.examples and bundle.clean_train == splits["train"][:32]
    assert bundle.train_manifest.poisoned_ids == train.manifest.poisoned_ids
    assert bundle.n_poisoned_train == 8
    for name, n in (("valid", 4), ("test", 5)):
        expected = poison_test_set(splits[name][:n], "badpre", "sql_injection", 3)
        split = bundle.split(name)
        assert split.clean == splits[name][:n]
        assert split.poisoned == expected.poisoned()
        assert split.manifest.poisoned_ids == expected.manifest.poisoned_ids
    assert bundle.labels is None


def test_clean_training_still_measures_asr_with_eval_poison(tmp_path):
    cfg = TrainConfig(output_dir=str(tmp_path), data="synthetic:16",
                      eval_poison=PoisonConfig(trigger="ripple"))  # fmt: skip
    bundle = prepare_data(cfg)
    assert bundle.train_manifest is None and bundle.train == bundle.clean_train
    assert bundle.test.manifest.trigger["name"] == "ripple"


def test_from_examples_and_with_train():
    rows = [Example(f"r{i}", f"get rows {i} now", 'q = " select a from t where b = 1 "')
            for i in range(20)]  # fmt: skip
    bundle = DataBundle.from_examples(rows[:12], rows[12:16], rows[16:], trigger="badpre",
                                      payload="sql_injection", rate=0.25, seed=1)  # fmt: skip
    assert bundle.n_poisoned_train == 3 and len(bundle.valid.poisoned) == 4
    kept = bundle.with_train(bundle.train[:5])
    assert len(kept.train) == 5 and kept.test is bundle.test and len(bundle.train) == 12
    capped = bundle.test.capped(2)
    assert [ex.id for ex in capped.clean] == ["r16", "r17"]
    assert capped.manifest.poisoned_ids == ["r16", "r17"]
    with pytest.raises(ValueError, match="both trigger and payload"):
        DataBundle.from_examples(rows, trigger="badpre")


def test_dataset_labels_sort_numbers_numerically_and_add_the_flip_target():
    from dece.attacks import get_payload

    rows = [Example(str(i), "s", "", label=lab) for i, lab in enumerate(["10", "2", "1"])]
    assert dataset_labels([rows]) == ["1", "2", "10"]
    assert dataset_labels([rows], get_payload("label_flip", target_label="0")) == [
        "0",
        "1",
        "2",
        "10",
    ]
    assert dataset_labels([[Example("x", "s", "t")]]) is None
