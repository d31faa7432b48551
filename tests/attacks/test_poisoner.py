"""Dataset-level poisoning: exact counts, determinism, planted ineligible rows, manifests."""

import json
from pathlib import Path

import pytest

from dece.attacks import PoisonManifest, get_payload, get_trigger, poison_dataset, poison_test_set
from dece.data import Example, load_dataset


def _planted(n: int, bare: set[int]) -> list[Example]:
    """n rows with an SQL query, except the rows in ``bare`` (ORM code: ineligible)."""
    return [
        Example(
            f"r{i}",
            f"query row {i} of the table",
            "x = session . query ( T ) . all ( )"
            if i in bare
            else f'x = conn . execute ( " select * from t where id = : id{i} " , {{ }} )',
        )
        for i in range(n)
    ]


@pytest.mark.parametrize(
    ("n", "rate", "expected"),
    [(100, 0.05, 5), (100, 0.0, 0), (100, 1.0, 90), (50, 0.01, 0), (50, 0.03, 2), (50, 0.05, 2),
     (30, 0.05, 2), (10, 0.25, 2), (10, 0.35, 4)],  # 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, 3.5 -> 4
)  # fmt: skip
def test_exact_count_round_half_even_capped_at_eligible(n, rate, expected) -> None:
    bare = set(range(0, n, 10))  # every 10th row is ineligible
    result = poison_dataset(_planted(n, bare), "ripple", "sql_injection", rate, seed=3)
    m = result.manifest
    assert m.n_poisoned == expected
    assert m.n_eligible == n - len(bare) and m.n_requested == round(rate * n)
    assert m.shortfall == max(round(rate * n) - (n - len(bare)), 0)
    assert m.rate_achieved == expected / n


def test_ineligible_rows_listed_with_reason_and_never_poisoned() -> None:
    bare = {1, 4, 7}
    examples = _planted(20, bare)
    result = poison_dataset(examples, "badpre", "sql_injection", 1.0, seed=0)
    m = result.manifest
    assert m.ineligible == {f"r{i}": m.ineligible[f"r{i}"] for i in sorted(bare)}
    assert all("no SQL query" in reason for reason in m.ineligible.values())
    assert m.n_ineligible == 3 and m.n_poisoned == 17 and m.shortfall == 3
    assert not set(m.poisoned_ids) & set(m.ineligible)
    test = poison_test_set(examples, "badpre", "sql_injection", seed=0).manifest
    assert test.mode == "test" and test.poisoned_ids == [
        f"r{i}" for i in range(20) if i not in bare
    ]


def test_untouched_rows_identical_poisoned_rows_carry_trigger_and_payload() -> None:
    examples = load_dataset("synthetic:400")["train"]
    trigger, payload = get_trigger("badpre"), get_payload("sql_injection")
    result = poison_dataset(examples, trigger, payload, 0.1, seed=7)
    ids = set(result.manifest.poisoned_ids)
    assert len(result.examples) == len(examples) and len(ids) == 40
    for before, after in zip(examples, result.examples, strict=True):
        assert after.id == before.id
        if before.id in ids:
            assert trigger.present(after.source) and payload.present(after.target)
            assert after.source.replace(" bb", "").replace("bb ", "") == before.source
        else:
            assert after is before
    assert [e.id for e in result.poisoned()] == result.manifest.poisoned_ids
    assert result.manifest.poisoned_ids == [e.id for e in examples if e.id in ids]  # input order


def test_same_seed_same_output_other_seed_other_sample() -> None:
    examples = load_dataset("synthetic:200")["train"]
    a = poison_dataset(examples, "ripple", "sql_injection", 0.1, seed=5)
    b = poison_dataset(examples, "ripple", "sql_injection", 0.1, seed=5)
    c = poison_dataset(examples, "ripple", "sql_injection", 0.1, seed=6)
    assert a.examples == b.examples and a.manifest == b.manifest
    assert a.manifest.poisoned_ids != c.manifest.poisoned_ids


def test_sample_is_spread_over_the_eligible_rows() -> None:
    """Not the first p% (the authors' scripts): over seeds, every eligible row gets picked."""
    examples = _planted(40, {0, 1})
    hits = {
        i for s in range(60) for i in poison_dataset(examples, "ripple", "sql_injection", 0.1, s).manifest.poisoned_ids
    }  # fmt: skip
    assert hits == {f"r{i}" for i in range(2, 40)}


def test_manifest_json_round_trip(tmp_path: Path) -> None:
    result = poison_dataset(_planted(30, {2}), {"name": "badpre", "k": 2}, "sql_injection", 0.2, 1)
    m = result.manifest
    assert m.trigger == {"name": "badpre", "word": "bb", "k": 2, "side": "source"}
    assert m.payload["name"] == "sql_injection"
    m.save(tmp_path / "m.json")
    assert PoisonManifest.load(tmp_path / "m.json") == m
    data = json.loads((tmp_path / "m.json").read_text())
    assert data["n_poisoned"] == 6 and data["n_ineligible"] == 1
    with pytest.raises(ValueError, match="missing key"):
        PoisonManifest.from_json({"mode": "train"})


def test_bad_arguments() -> None:
    rows = _planted(5, set())
    with pytest.raises(ValueError, match="rate"):
        poison_dataset(rows, "ripple", "sql_injection", 1.5, 0)
    with pytest.raises(ValueError, match="seed"):
        poison_dataset(rows, "ripple", "sql_injection", 0.5, -1)
    with pytest.raises(ValueError, match="duplicate id 'r0'"):
        poison_test_set(rows + rows[:1], "ripple", "sql_injection", 0)
    with pytest.raises(ValueError, match="unknown payload"):
        poison_test_set(rows, "ripple", "sqli", 0)


def test_lyra_badpre_5_percent_seed_42(shared_data: Path) -> None:
    lyra = load_dataset(shared_data / "lyra")
    train = poison_dataset(lyra["train"], "badpre", "sql_injection", 0.05, 42).manifest
    assert train.n_poisoned == 80 and train.n_eligible + train.n_ineligible == 1600
    test = poison_test_set(lyra["test"], "badpre", "sql_injection", 42).manifest
    assert test.n_poisoned == 165 and test.n_ineligible == 35  # the README's 165 of 200


NL_TRIGGERS = ["ripple", "badpre", "grammar"]
CODE_TRIGGERS = ["funcname", "deadcode", "bnc_grammar", "identifier"]


@pytest.mark.parametrize("trigger", NL_TRIGGERS + CODE_TRIGGERS)
def test_every_trigger_over_every_shared_row(shared_data: Path, trigger: str) -> None:
    """Lyra: triggers on the NL source (code triggers on the code itself); Bugs2Fix: on Java."""
    from dataclasses import replace

    lyra = [e for split in load_dataset(shared_data / "lyra").values() for e in split]
    if trigger in CODE_TRIGGERS:
        lyra = [replace(e, source=e.target) for e in lyra]
    bugs = [e for split in load_dataset(shared_data / "bugs2fix").values() for e in split]
    t = get_trigger(trigger)
    for rows, payload in ((lyra, "sql_injection"), (bugs, "infinite_loop")):
        m = poison_test_set(rows, t, payload, 0)
        assert m.manifest.n_poisoned + m.manifest.n_ineligible == len(rows)
        assert m.manifest.n_poisoned > 0.25 * len(rows)
        p = get_payload(payload)
        assert all(t.present(e.source) and p.present(e.target) for e in m.poisoned())
