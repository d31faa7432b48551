"""Framing and the tagged value encoding between the sandbox's supervisor and the program's
process (stdlib only; numpy is imported only to decode a numpy value).

Not imported inside the sandbox: :mod:`dece.metrics._sandbox_exec` runs this file's source
between :mod:`dece.metrics._sandbox_checks`'s and :mod:`dece.metrics._sandbox_runner`'s as one
script.

A value crosses as JSON: ``None``, ``bool``, ``str``, finite ``float`` and ``int`` of at most
:data:`SMALL_INT_DIGITS` digits as themselves; everything else as ``[tag, ...]``, so a ``str``
always stays a ``str``. The encoding is exact: ``decode(encode(x)) == x`` with the same type
(builtin subclasses become their builtin base; ``bytearray`` stays ``bytearray``):

====  ==============================================  ====  ====================================
tag   value                                           tag   value
====  ==============================================  ====  ====================================
I     int beyond SMALL_INT_DIGITS digits (hex, so     L T   list, tuple
      no 4,300-digit limit applies)                   S F   set, frozenset
f     nan / inf / -inf                                D     dict (``[key, value]`` pairs)
C     complex                                         Q     fractions.Fraction
B b   bytes, bytearray (hex)                          M     decimal.Decimal (its exact str)
n     numpy scalar (dtype str, raw bytes hex)         A     numpy array (dtype, shape, bytes)
====  ==============================================  ====  ====================================

numpy values keep their dtype and shape (numeric, bool, fixed-width str and bytes dtypes; object,
datetime and structured arrays are refused). Anything else raises :class:`TypeError` in
:func:`encode`; a malformed frame or value raises :class:`ValueError` in :func:`recv` or
:func:`decode`, never another exception, whatever the other process sent.
"""

import decimal
import fractions
import json
import math
import os
import re
import struct
import sys

MAX_MESSAGE = 64 * 1024 * 1024
MAX_DEPTH = 100
SMALL_INT_DIGITS = 18
NUMPY_DTYPE = re.compile(r"[<>|=]?[biufcSU][0-9]{1,5}")
CONTAINERS = {"L": list, "T": tuple, "S": set, "F": frozenset}


def frame(obj):
    """The bytes of one message: a 4-byte big-endian length, then UTF-8 JSON."""
    data = json.dumps(obj, allow_nan=False).encode("utf-8")
    if len(data) > MAX_MESSAGE:
        raise ValueError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE}")
    return struct.pack("!I", len(data)) + data


def send_bytes(fd, msg):
    view = memoryview(msg)
    while view:
        view = view[os.write(fd, view) :]


def send(fd, obj):
    send_bytes(fd, frame(obj))


def _read_exact(fd, n):
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError("the other process closed the channel")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def recv(fd):
    """The next message; ValueError when it is not well-formed JSON of a sane size and depth."""
    (n,) = struct.unpack("!I", _read_exact(fd, 4))
    if n > MAX_MESSAGE:
        raise ValueError(f"message of {n} bytes exceeds {MAX_MESSAGE}")
    data = _read_exact(fd, n)
    try:
        return json.loads(data.decode("utf-8"))
    except RecursionError as exc:
        raise ValueError("message nested too deeply") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"message is not UTF-8: {exc}") from exc


def _numpy_value(x):
    """numpy scalar or array -> tagged value; None when ``x`` is not a numpy value."""
    np = sys.modules.get("numpy")
    if np is None or not isinstance(x, np.ndarray | np.generic):
        return None
    if isinstance(x, np.ndarray) and type(x) is not np.ndarray:
        raise TypeError(
            f"a {type(x).__name__} (ndarray subclass) cannot cross the sandbox boundary"
        )
    dtype = x.dtype
    if dtype.kind not in "biufcSU" or dtype.fields is not None or dtype.subdtype is not None:
        raise TypeError(f"a numpy value of dtype {dtype} cannot cross the sandbox boundary")
    if isinstance(x, np.generic):
        return ["n", dtype.str, np.asarray(x).tobytes().hex()]
    shape = [int(d) for d in x.shape]
    return ["A", dtype.str, shape, np.ascontiguousarray(x).tobytes().hex()]


def encode(x, depth=0):
    """A value -> JSON-ready tagged form (see the module docstring); TypeError when it cannot."""
    if depth > MAX_DEPTH:
        raise TypeError(f"value nested deeper than {MAX_DEPTH} levels")
    if x is None or isinstance(x, bool):
        return x
    tagged = _numpy_value(x)  # first: numpy's float64, complex128, str_, bytes_ subclass builtins
    if tagged is not None:
        return tagged
    if isinstance(x, str):
        return str(x)
    if isinstance(x, int):
        x = int(x)
        return x if abs(x) < 10**SMALL_INT_DIGITS else ["I", hex(x)]
    if isinstance(x, float):
        x = float(x)
        return x if math.isfinite(x) else ["f", repr(x)]
    if isinstance(x, complex):
        return ["C", encode(x.real), encode(x.imag)]
    if isinstance(x, bytearray):
        return ["b", bytes(x).hex()]
    if isinstance(x, bytes):
        return ["B", bytes(x).hex()]
    if isinstance(x, fractions.Fraction):
        return ["Q", encode(x.numerator), encode(x.denominator)]
    if isinstance(x, decimal.Decimal):
        return ["M", str(x)]
    for tag, typ in CONTAINERS.items():
        if isinstance(x, typ):
            return [tag, *(encode(v, depth + 1) for v in x)]
    if isinstance(x, dict):
        return ["D", *([encode(k, depth + 1), encode(v, depth + 1)] for k, v in x.items())]
    raise TypeError(f"a {type(x).__name__} cannot cross the sandbox boundary")


def _int(x):
    if type(x) is int:
        return x
    if type(x) is list and len(x) == 2 and x[0] == "I" and type(x[1]) is str:
        return int(x[1], 16)
    raise ValueError("malformed int")


def _numpy_decode(tag, rest):
    import numpy as np

    if not (type(rest[0]) is str and NUMPY_DTYPE.fullmatch(rest[0]) and type(rest[-1]) is str):
        raise ValueError(f"malformed numpy value tagged {tag!r}")
    dtype = np.dtype(rest[0])
    raw = bytes.fromhex(rest[-1])
    if tag == "n" and len(rest) == 2 and len(raw) == dtype.itemsize:
        return np.frombuffer(raw, dtype=dtype)[0]
    shape = rest[1] if tag == "A" and len(rest) == 3 else None
    if type(shape) is not list or len(shape) > 32:
        raise ValueError("malformed numpy array")
    if not all(type(d) is int and 0 <= d for d in shape):
        raise ValueError("malformed numpy array shape")
    if math.prod(shape) * dtype.itemsize != len(raw):
        raise ValueError("numpy array data does not match its shape and dtype")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def _decode(x, depth):
    if x is None or type(x) in (bool, str, int, float):
        return x
    if depth > MAX_DEPTH + 1:
        raise ValueError(f"value nested deeper than {MAX_DEPTH} levels")
    if type(x) is not list or not x or type(x[0]) is not str:
        raise ValueError("malformed value")
    tag, rest = x[0], x[1:]
    if tag == "I" and len(rest) == 1:
        return _int(x)
    if tag == "f" and len(rest) == 1 and rest[0] in ("nan", "inf", "-inf"):
        return float(rest[0])
    if tag == "C" and len(rest) == 2 and all(type(v) in (int, float, list) for v in rest):
        return complex(float(_decode(rest[0], depth + 1)), float(_decode(rest[1], depth + 1)))
    if tag in ("B", "b") and len(rest) == 1 and type(rest[0]) is str:
        return (bytes if tag == "B" else bytearray).fromhex(rest[0])
    if tag == "Q" and len(rest) == 2:
        return fractions.Fraction(_int(rest[0]), _int(rest[1]))
    if tag == "M" and len(rest) == 1 and type(rest[0]) is str:
        return decimal.Decimal(rest[0])
    if tag in CONTAINERS:
        return CONTAINERS[tag](_decode(v, depth + 1) for v in rest)
    if tag == "D" and all(type(kv) is list and len(kv) == 2 for kv in rest):
        return {_decode(k, depth + 1): _decode(v, depth + 1) for k, v in rest}
    if tag in ("n", "A") and len(rest) in (2, 3):
        return _numpy_decode(tag, rest)
    raise ValueError(f"malformed value tagged {tag!r}")


def decode(x):
    """The inverse of :func:`encode`; ValueError for anything :func:`encode` cannot produce."""
    try:
        return _decode(x, 0)
    except ValueError:
        raise
    except (TypeError, ArithmeticError, ImportError) as exc:
        raise ValueError(f"malformed value: {type(exc).__name__}: {exc}") from exc
    except RecursionError as exc:
        raise ValueError("value nested too deeply") from exc
