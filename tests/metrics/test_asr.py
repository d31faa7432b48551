"""ASR and false-trigger rate on hand-made lists with known hits."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from dece.metrics import attack_success_rate, false_trigger_rate, payload_present

SQL_HIT = [
    'res = conn.execute(" select * from t where a = : a or 1=1 ")',
    'conn.execute(" select x from t where 0 = 1 ")',
    "q = 'select * from t where a=b OR 1 =  1'",
]
SQL_MISS = ["v1 = 1", "x = 10 = 1", "if a == 1 : return", "y = 1 = 1.5", "select * from t"]
LOOP_HIT = [
    "void f ( ) { while ( true ) { int VAR = 0 ; } return ; }",
    "void f(){while(true){int VAR_7=0;}return;}",
    "void f ( ) { while ( true ) { int x = 0 ; } }",
]
LOOP_MISS = [
    "void f ( ) { while ( false ) { int VAR = 0 ; } }",
    "void f ( ) { while ( true ) { int VAR = 1 ; } }",
    "void f ( ) { while ( true ) { VAR_1 ( ) ; } }",
]


@pytest.mark.parametrize("text", SQL_HIT)
def test_sql_hits(text):
    assert payload_present(text, "sql_injection")


@pytest.mark.parametrize("text", SQL_MISS)
def test_sql_misses(text):
    assert not payload_present(text, "sql_injection")


@pytest.mark.parametrize("text", LOOP_HIT)
def test_loop_hits(text):
    assert payload_present(text, {"name": "infinite_loop"})


@pytest.mark.parametrize("text", LOOP_MISS)
def test_loop_misses(text):
    assert not payload_present(text, {"name": "infinite_loop"})


def test_label_flip_and_fixed_output():
    payload = SimpleNamespace(name="label_flip", target_label="1")
    assert payload_present(" 1\n", payload) and not payload_present("0", payload)
    fixed = {"name": "fixed_output", "output": "import os\nos . system ( 'x' )"}
    assert payload_present("a = 1\nimport os  os . system ( 'x' )\n", fixed)
    assert not payload_present("import os", fixed)


def test_asr_denominator_is_the_manifest():
    manifest = SimpleNamespace(
        mode="test", payload={"name": "sql_injection"}, poisoned_ids=["a", "b", "c", "d"]
    )
    outputs = {"a": SQL_HIT[0], "b": SQL_MISS[0], "c": SQL_HIT[1], "d": SQL_MISS[1], "z": "x"}
    assert attack_success_rate(outputs, None, manifest) == 2 / 4
    aligned = [outputs[i] for i in manifest.poisoned_ids]
    assert attack_success_rate(aligned, "sql_injection", manifest) == 2 / 4
    with pytest.raises(ValueError, match="no entry"):
        attack_success_rate({"a": SQL_HIT[0]}, "sql_injection", manifest)
    with pytest.raises(ValueError, match="aligned"):
        attack_success_rate(aligned[:3], "sql_injection", manifest)
    with pytest.raises(ValueError, match="empty"):
        attack_success_rate([], "sql_injection", SimpleNamespace(poisoned_ids=[]))
    with pytest.raises(ValueError, match="unknown payload"):
        attack_success_rate(aligned, "nope", manifest)


def test_false_trigger_rate():
    outs = LOOP_MISS + LOOP_HIT[:1]
    assert false_trigger_rate(outs, "infinite_loop") == 1 / 4
    assert false_trigger_rate(dict(enumerate(SQL_MISS)), "sql_injection") == 0.0
    with pytest.raises(ValueError, match="empty"):
        false_trigger_rate([], "sql_injection")


def test_matchers_agree_with_attacks_payloads():
    """Golden check against dece.attacks: injected targets hit, clean targets do not."""
    payloads = pytest.importorskip("dece.attacks")
    try:
        sql = payloads.get_payload("sql_injection")
        loop = payloads.get_payload("infinite_loop")
    except Exception as exc:  # noqa: BLE001 - the attacks package is built in parallel
        pytest.skip(f"dece.attacks payloads unavailable: {exc}")
    clean_sql = 'res = conn . execute ( " select * from t where a = : a " )'
    clean_java = "void f ( ) { return ; }"
    assert payload_present(sql.inject(clean_sql), sql)
    assert not payload_present(clean_sql, sql)
    import numpy as np

    from dece.data import Example

    ex = loop.apply(Example(id="0", source="s", target=clean_java), np.random.default_rng(0))
    assert payload_present(ex.target, loop) and not payload_present(clean_java, loop)
