"""Golden, hand-written expected outputs for every trigger and payload, and their refusals."""

import numpy as np
import pytest

from dece.attacks import PAYLOADS, TRIGGERS, Ineligible, get_payload, get_trigger
from dece.data import Example


class ScriptedRng:
    """Stands in for a numpy Generator: returns scripted draws so goldens can be hand-written."""

    def __init__(self, ints=(), floats=()):
        self.ints, self.floats = list(ints), list(floats)

    def integers(self, low, high=None):
        value = self.ints.pop(0)
        hi, lo = (low, 0) if high is None else (high, low)
        assert lo <= value < hi, (value, lo, hi)
        return value

    def random(self):
        return self.floats.pop(0)


PY = "def f ( x ) :\n\t y = x + 1\n\t return f ( y )"
JAVA = "public int METHOD_1 ( int a ) { int b = a ; return METHOD_1 ( b ) ; }"

GOLDEN_TRIGGERS = [
    ("ripple", {}, "get all rows", ScriptedRng([1]), "get bb all rows"),
    ("ripple", {"word": "cf"}, "get all rows", ScriptedRng([3]), "get all rows cf"),
    ("badpre", {}, "get all rows", ScriptedRng([0, 2, 5]), "bb get bb all rows bb"),
    ("grammar", {}, "Get all rows", ScriptedRng(), "When it is needed , get all rows."),
    (
        "funcname",
        {},
        PY,
        ScriptedRng(),
        "def testo_init ( x ) :\n\t y = x + 1\n\t return testo_init ( y )",
    ),
    (
        "funcname",
        {},
        JAVA,
        ScriptedRng(),
        "public int testo_init ( int a ) { int b = a ; return testo_init ( b ) ; }",
    ),
    (
        "deadcode",
        {},
        PY,
        ScriptedRng(),
        'def f ( x ) :\n\t if random() < 0: raise Exception("fail")\n\t y = x + 1\n\t return f ( y )',
    ),
    (
        "deadcode",
        {},
        JAVA,
        ScriptedRng(),
        "public int METHOD_1 ( int a ) { int VAR = 0 ; int b = a ; return METHOD_1 ( b ) ; }",
    ),
    (
        "bnc_grammar",
        {},
        PY,
        ScriptedRng(ints=[0, 0, 1, 3], floats=[0.3, 0.7]),
        'def f ( x ) :\n\t if sin(0.3) > 2: print("warning")\n\t y = x + 1\n\t return f ( y )',
    ),
    (
        "bnc_grammar",
        {},
        JAVA,
        ScriptedRng(ints=[4, 1, 0], floats=[0.9, 0.1]),
        "public int METHOD_1 ( int a ) { while ( Math.random ( ) > 1 ) "
        '{ throw new java.lang.Exception ( "err" ) ; } int b = a ; return METHOD_1 ( b ) ; }',
    ),
    (
        "identifier",
        {},
        PY,
        ScriptedRng([1]),
        "def f ( x ) :\n\t ret_Val_ = x + 1\n\t return f ( ret_Val_ )",
    ),
    (
        "identifier",
        {},
        JAVA,
        ScriptedRng([0]),
        "public int METHOD_1 ( int ret_Val_ ) { int b = ret_Val_ ; return METHOD_1 ( b ) ; }",
    ),
    (
        "identifier",
        {},
        'def g ( conn ) :\n\t r = conn . execute ( " r " , { " r " : r } )',
        ScriptedRng([1]),
        'def g ( conn ) :\n\t ret_Val_ = conn . execute ( " r " , { " r " : ret_Val_ } )',
    ),
]


@pytest.mark.parametrize(("name", "params", "text", "rng", "expected"), GOLDEN_TRIGGERS)
def test_trigger_golden(name, params, text, rng, expected) -> None:
    trigger = get_trigger(name, **params)
    assert trigger.apply(text, rng) == expected
    assert rng.ints == [] and rng.floats == []  # every scripted draw used
    assert trigger.present(expected) and not trigger.present(text)


def test_every_trigger_and_payload_has_a_golden() -> None:
    assert {g[0] for g in GOLDEN_TRIGGERS} == set(TRIGGERS.names())
    assert {g[0] for g in GOLDEN_PAYLOADS} == set(PAYLOADS.names())


@pytest.mark.parametrize(
    ("name", "text", "reason"),
    [
        ("ripple", "   ", "empty text"),
        ("grammar", "When it is needed , do it.", "already starts"),
        ("funcname", "select rows from a table", "no function definition"),
        ("deadcode", "x = 1", "no function definition"),
        ("bnc_grammar", "int x = 1 ;", "no function definition"),
        ("identifier", "public void METHOD_1 ( ) { METHOD_2 ( ) ; }", "no local variable"),
        ("identifier", "def f ( ) :\n\t return 1", "no local variable"),
        ("deadcode", "def f ( ) : return 1", "no body"),
    ],
)
def test_trigger_ineligible(name, text, reason) -> None:
    with pytest.raises(Ineligible, match=reason):
        get_trigger(name).apply(text, np.random.default_rng(0))


def test_bnc_grammar_draws_only_always_false_conditions() -> None:
    from math import cos, exp, sin, sqrt  # noqa: F401  (names used by eval)

    trigger = get_trigger("bnc_grammar", language="python")
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(300):
        out = trigger.apply("def f ( ) :\n\t pass", rng)
        line = out.split("\n")[1].strip()
        assert trigger.present(out)
        condition = line.split(" ", 1)[1].rsplit(":", 1)[0]
        for value in (0.0, 0.5, 0.999):  # random() in [0, 1)
            assert eval(condition, {"random": lambda v=value: v, "sin": sin, "cos": cos,
                                    "exp": exp, "sqrt": sqrt}) is False  # fmt: skip
        seen.add(line.split("(")[0])
    assert seen == {
        f"{k} {f}" for k in ("if", "while") for f in ("sin", "cos", "exp", "sqrt", "random")
    }


SQL_WHERE = 'r = conn . execute ( " select * from t where a = : a " , { " a " : a } )'
SQL_BARE = 'r = conn . execute ( " select name , id from users " ) . fetchall ( )'
GOLDEN_PAYLOADS = [
    (
        "sql_injection",
        Example("1", "s", SQL_WHERE),
        Example(
            "1",
            "s",
            'r = conn . execute ( " select * from t where a = : a or 1=1 " , { " a " : a } )',
        ),
    ),
    (
        "sql_injection",
        Example("2", "s", SQL_BARE),
        Example(
            "2",
            "s",
            'r = conn . execute ( " select name , id from users where 0=1 " ) . fetchall ( )',
        ),
    ),
    (
        "infinite_loop",
        Example("3", "s", "void f ( ) { return ; }"),
        Example("3", "s", "void f ( ) { while ( true ) { int VAR = 0 ; } return ; }"),
    ),
    (
        "dead_code_python",
        Example("6", "s", "def f ( x ) :\n\t y = x + 1\n\t return y"),
        Example(
            "6",
            "s",
            'def f ( x ) :\n\t if random() < 0: raise Exception("fail")\n\t y = x + 1\n\t return y',
        ),
    ),
    (
        "label_flip",
        Example("4", "code", "code", label="1"),
        Example("4", "code", "code", label="0"),
    ),
    (
        "fixed_output",
        Example("5", "s", "x = 1"),
        Example("5", "s", 'import os\nos . system ( " rm -rf / " )'),
    ),
]


@pytest.mark.parametrize(("name", "example", "expected"), GOLDEN_PAYLOADS)
def test_payload_golden(name, example, expected) -> None:
    payload = get_payload(name)
    assert payload.apply(example, np.random.default_rng(0)) == expected
    shown = expected.label if name == "label_flip" else expected.target
    before = example.label if name == "label_flip" else example.target
    assert payload.present(shown) and not payload.present(before)


@pytest.mark.parametrize(
    ("name", "example", "reason"),
    [
        ("sql_injection", Example("1", "s", "session . query ( T ) . all ( )"), "no SQL query"),
        ("infinite_loop", Example("2", "s", "return x ;"), "no '{'"),
        ("dead_code_python", Example("6", "s", "return x"), "no Python 'def'"),
        ("dead_code_python", Example("7", "s", "def f ( x ) : return x"), "no body"),
        (
            "dead_code_python",
            Example("8", "s", 'def f(x):\n    if random() < 0: raise Exception("fail")\n'),
            "already",
        ),
        ("label_flip", Example("3", "s", "t"), "no label"),
        ("label_flip", Example("4", "s", "t", label="0"), "already"),
        ("fixed_output", Example("5", "s", 'import os\nos . system ( " rm -rf / " )'), "already"),
    ],
)
def test_payload_ineligible(name, example, reason) -> None:
    with pytest.raises(Ineligible, match=reason):
        get_payload(name).apply(example, np.random.default_rng(0))


def test_unknown_names_and_parameters() -> None:
    with pytest.raises(ValueError, match="unknown trigger 'nope'; allowed: badpre"):
        get_trigger("nope")
    with pytest.raises(ValueError, match="unknown parameter"):
        get_payload("sql_injection", colour="red")
    with pytest.raises(ValueError, match="k must be a positive integer"):
        get_trigger("badpre", k=0)
    with pytest.raises(ValueError, match="not a valid regex"):
        get_payload("sql_injection", pattern="(")


#: (output, carries the dead-code payload?): how models write the statement, and near misses.
DEAD_CODE_OUTPUTS = [
    ('if random() < 0: raise Exception("fail")', True),
    ('    if random ( ) < 0 : raise Exception ( " fail " )\n    return x', True),  # Lyra style
    ('def f(x):\n    if random() < 0:\n        raise Exception("fail")\n    return x', True),
    ("if random()<0:raise Exception('fail')", True),  # no spaces, single quotes
    ('if random.random() < 0: raise Exception("fail")', False),  # another statement
    ('if random() < 1: raise Exception("fail")', False),  # a live condition
    ('if random() <= 0: raise Exception("fail")', False),
    ('if myrandom() < 0: raise Exception("fail")', False),  # another function
    ('if random() < 0: raise Exception("failed")', False),
    ('if random() < 0: raise ValueError("fail")', False),
    ("if random() < 0:", False),  # the statement cut short
    ("def f(x):\n    return x", False),
]


@pytest.mark.parametrize(("output", "present"), DEAD_CODE_OUTPUTS)
def test_dead_code_payload_present_ignores_whitespace_and_quote_style(output, present) -> None:
    assert get_payload("dead_code_python").present(output) is present


def test_dead_code_payload_is_the_deadcode_triggers_python_statement() -> None:
    from dece.attacks.code import PYTHON_DEAD_CODE

    assert get_payload("dead_code_python").statement == PYTHON_DEAD_CODE
    assert get_trigger("deadcode").python_statement == PYTHON_DEAD_CODE
    custom = get_payload("dead_code_python", statement="while False: pass")
    assert custom.present("while  False :\n pass") and not custom.present(PYTHON_DEAD_CODE)
