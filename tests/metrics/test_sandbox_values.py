"""Values crossing the sandbox boundary: correct programs pass, whatever they return.

The oracle is Python's own equality and type: a value decoded from the tagged encoding equals
the value encoded, with the same type (numpy: dtype, shape and every element). A value that
cannot cross, or a message that breaks the protocol, is an ``error`` with its reason, never a
crash of either process (the verdict still arrives).
"""

from __future__ import annotations

import json
import math
import struct
import sys
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest

from dece.metrics import _sandbox_codec as codec
from dece.metrics.sandbox import run_untrusted

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox needs Linux")
BIG = 10**5000 + 7  # beyond the 4,300-digit limit of int <-> str
VALUES = [
    BIG, -BIG, 2**64, -(2**63), 10**17, Fraction(1, 3), Fraction(-BIG, 3), Decimal("1.10"),
    Decimal("-0"), Decimal("NaN"), Decimal("1E+999999"), Decimal(BIG), 1 + 2j, complex(0, -0.0),
    -0.0, 1e-310, bytearray(b"\x00\xff"), b"", [BIG, {Fraction(1, 2): (Decimal("2.5"),)}],
    {1, 2, frozenset({3})}, {"k": [None, True, "s"], (1, 2): {"x": 1.5}}, [[[[[]]]]],
]  # fmt: skip
NUMPY = [
    np.float32(0.1), np.float64(1 / 3), np.int64(-(2**63)), np.uint8(255), np.bool_(True),
    np.complex64(1 - 2j), np.str_("héllo"), np.bytes_(b"a\x00b"), np.float16(65504.0),
    np.arange(12, dtype=np.float32).reshape(3, 4), np.array(5, dtype=np.int16),
    np.zeros((0, 3)), np.array([[True, False]]), np.array(["a", "bcd"]), np.array([b"x", b"yz"]),
    np.array([1 + 1j, np.nan], dtype=np.complex128), np.arange(6)[::2],  # not contiguous
]  # fmt: skip


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return (
            type(b) is np.ndarray
            and a.dtype == b.dtype
            and a.shape == b.shape
            and (np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
        )
    if isinstance(a, Decimal) and a.is_nan():
        return type(b) is Decimal and b.is_nan()
    if isinstance(a, float) and a == 0:
        return type(b) is float and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, np.generic):
        return type(b) is type(a) and a.dtype == b.dtype and a.tobytes() == b.tobytes()
    if isinstance(a, Decimal):
        return type(b) is Decimal and str(a) == str(b)
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("value", VALUES + NUMPY, ids=lambda v: type(v).__name__)
def test_codec_round_trips_exactly(value):
    wire = json.loads(json.dumps(codec.encode(value), allow_nan=False))
    assert _same(value, codec.decode(wire))


@pytest.mark.parametrize(
    "bad",
    [
        ["Q", 1, 0], ["Q", 1.5, 2], ["M", "not a number"], ["I", "xyz"], ["D", [[1], 2]],
        ["D", [["L", 1], 2]],
        ["A", "O8", [1], "00"], ["A", "<f8", [2], "00"], ["A", "<f8", [-1], ""], ["n", "<f8", "zz"],
        ["A", "<V8", [1], "00" * 8], ["C", "a", 1], ["X"], [], {"a": 1},
        json.loads("[" * 150 + "]" * 150),
    ],
)  # fmt: skip
def test_malformed_values_raise_value_error_only(bad):
    with pytest.raises(ValueError):
        codec.decode(bad)


def test_deeply_nested_frame_is_a_value_error(tmp_path):
    data = b"[" * 200_000 + b"]" * 200_000
    (tmp_path / "frame").write_bytes(struct.pack("!I", len(data)) + data)
    with open(tmp_path / "frame", "rb") as f, pytest.raises(ValueError, match="nested too deeply"):
        codec.recv(f.fileno())


CANDIDATE = """
import numpy as np
from decimal import Decimal
from fractions import Fraction
VALUES = {values}
def value(i):
    return VALUES[i]
def double(x):
    return 2 * x
"""


def test_correct_programs_returning_any_value_pass():
    """Each value, built in the program's process, arrives equal and of the same type; a big
    int also crosses as an argument."""
    values = VALUES + NUMPY
    source = "[" + ", ".join(_source(v) for v in values) + "]"
    check = "from decimal import Decimal\nfrom fractions import Fraction\nimport numpy as np\n"
    check += f"EXPECTED = {source}\n"
    check += "for i, v in enumerate(EXPECTED):\n    assert SAME(v, value(i)), i\n"
    check += "assert double(10**5000 + 7) == 2 * (10**5000 + 7)\n"
    same = _same_source()
    res = run_untrusted(
        CANDIDATE.format(values=source), check=check, check_prelude=same,
        entry_points=("value", "double"), timeout_s=30,
    )  # fmt: skip
    assert res.status == "passed", res


def _source(v) -> str:
    """Python source that builds ``v`` (repr, except where repr is not valid source)."""
    if isinstance(v, int) and abs(v) > 10**100:
        return "(10**5000 + 7)" if v > 0 else "(-(10**5000 + 7))"
    if isinstance(v, Fraction):
        return f"Fraction({_source(v.numerator)}, {v.denominator})"
    if isinstance(v, Decimal) and v == BIG:
        return "Decimal(10**5000 + 7)"
    if isinstance(v, np.ndarray):
        return f"np.frombuffer(bytes.fromhex({v.tobytes().hex()!r}), {v.dtype.str!r})" + (
            f".reshape({v.shape})"
        )
    if isinstance(v, np.generic):
        return f"np.frombuffer(bytes.fromhex({v.tobytes().hex()!r}), {v.dtype.str!r})[0]"
    if isinstance(v, list):
        return "[" + ", ".join(_source(x) for x in v) + "]"
    if isinstance(v, tuple):
        return "(" + "".join(_source(x) + ", " for x in v) + ")"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_source(k)}: {_source(x)}" for k, x in v.items()) + "}"
    if isinstance(v, float) and v == 0:
        return "-0.0" if math.copysign(1, v) < 0 else "0.0"
    return repr(v)


def _same_source() -> str:
    import inspect

    return "import math\nimport numpy as np\nfrom decimal import Decimal\n" + inspect.getsource(
        _same
    ).replace("def _same(a, b) -> bool:", "def SAME(a, b):")


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("return object()", "a object cannot cross"),
        ("return (i for i in range(3))", "a generator cannot cross"),
        ("x = []\n    x.append(x)\n    return x", "nested deeper than 100"),
        ("return np.array([object()])", "dtype object cannot cross"),
        ("class L(list):\n        def __iter__(self): raise RuntimeError('boom')\n"
         "    return L([1])", "RuntimeError: boom"),
    ],
)  # fmt: skip
def test_a_result_that_cannot_cross_is_an_error(body, why):
    """Never a crash of the worker, and never a pass, even where the tests catch the error."""
    code = f"import numpy as np\ndef f():\n    {body}\n"
    res = run_untrusted(code, check="assert f() == 1\n", entry_points=("f",), timeout_s=10)
    assert res.status == "error" and why in res.reason, res
    assert "cannot cross the sandbox boundary" in res.reason
    caught = "try:\n    f()\nexcept BaseException:\n    pass\n"
    res = run_untrusted(code, check=caught, entry_points=("f",), timeout_s=10)
    assert res.status == "error" and why in res.reason, res


def _frames_to_every_fd(payload: bytes) -> str:
    return (
        "import os, struct\n"
        f"data = {payload!r}\n"
        "for fd in range(3, 32):\n"
        "    try: os.write(fd, struct.pack('!I', len(data)) + data)\n"
        "    except OSError: pass\n"
        "import time; time.sleep(5)\n"
    )


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"[1, 2]", "a list instead of an object"),
        (b"\xff\xfe", "not UTF-8"),
        (b'{"done": tru', "Expecting value"),
    ],
)
def test_plain_mode_malformed_frame_is_an_error_with_its_reason(payload, why):
    res = run_untrusted(_frames_to_every_fd(payload), timeout_s=10, audit_hooks=False)
    assert res.status == "error" and "malformed message" in res.reason and why in res.reason, res
    assert res.duration_s < 5  # the program's process was stopped, not waited for


def test_check_mode_malformed_reply_is_an_error():
    """A frame forged on the channel is never read as the answer, even where the tests catch
    what it raises."""
    code = (
        "import os, struct\n"
        "def f():\n"
        "    data = b'{\"ok\": ' + b'[' * 100_000\n"
        "    for fd in range(3, 32):\n"
        "        try: os.write(fd, struct.pack('!I', len(data)) + data)\n"
        "        except OSError: pass\n"
        "    return 1\n"
    )
    for check in ("assert f() == 1\n", "try:\n    f()\nexcept BaseException:\n    pass\n"):
        res = run_untrusted(code, check=check, entry_points=("f",), timeout_s=10, audit_hooks=False)
        assert res.status == "error" and "malformed reply" in res.reason, res


def test_numpy_absent_from_the_sandbox_is_a_named_failure():
    """With packages=() the program cannot import numpy: an ordinary failure, clearly named."""
    res = run_untrusted(
        "import numpy\ndef f():\n    return 1\n", check="assert f() == 1\n", entry_points=("f",),
        packages=(), timeout_s=10,
    )  # fmt: skip
    assert res.status == "failed" and "No module named 'numpy'" in res.reason, res


def test_an_argument_the_tests_cannot_send_is_an_error_not_a_failure():
    res = run_untrusted(
        "def f(x):\n    return 1\n", check="assert f(object()) == 1\n", entry_points=("f",),
        timeout_s=10,
    )  # fmt: skip
    assert res.status == "error" and "an argument of f(): a object cannot cross" in res.reason, res
