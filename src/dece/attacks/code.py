"""Code triggers: function rename, fixed dead code, grammar-drawn dead code, identifier rename.

Two code styles are handled: Python (a ``def NAME ( ... ) :`` header, indented body; Lyra's
space-tokenised form or ordinary source) and Java/C-like (Bugs2Fix: a method header followed by
``{``). ``language="auto"`` picks Python when the text has a ``def`` header, else Java when it has
a ``{``; other texts are ineligible.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from dece.attacks.base import TRIGGERS, Ineligible, Trigger, TriggerEdit

__all__ = [
    "PYTHON_DEAD_CODE",
    "BnCGrammarTrigger",
    "DeadCodeTrigger",
    "FuncNameTrigger",
    "IdentifierTrigger",
    "insert_statement",
]

#: The fixed Python dead-code statement: the ``deadcode`` trigger's default and the
#: ``dead_code_python`` payload's (:mod:`dece.attacks.payloads`).
PYTHON_DEAD_CODE = 'if random() < 0: raise Exception("fail")'

_PY_DEF = re.compile(r"^([ \t]*)def[ \t]+([A-Za-z_]\w*)[ \t]*\(", re.MULTILINE)
_JAVA_KEYWORDS = frozenset(
    "if while for switch catch synchronized return new throw else do try case".split()
)
# A Java/C-like method header: no ';' or '{' before "NAME ( ... ) [throws ...] {".
_JAVA_HEADER = re.compile(r"\A[^;{]*?([A-Za-z_]\w*)\s*\([^;{]*\)\s*(?:throws\s+[\w.\s,]+?)?\s*\{")
_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'')
_LANGUAGES = ("auto", "python", "java")


def _language(text: str, language: str) -> str:
    if language not in _LANGUAGES:
        raise ValueError(f"language must be one of {_LANGUAGES}, got {language!r}")
    if language != "auto":
        return language
    if _PY_DEF.search(text):
        return "python"
    if _JAVA_HEADER.match(text):
        return "java"
    raise Ineligible("no function definition (neither a Python 'def' nor a Java method header)")


def _rename(text: str, old: str, new: str, *, calls_only: bool = False) -> TriggerEdit:
    """Rename identifier ``old`` to ``new`` outside string literals and attribute accesses.

    ``calls_only``: only where followed by ``(`` (a definition or a call). The spans are the
    renamed occurrences in the new text.
    """
    follow = r"(?=\s*\()" if calls_only else r"\b"
    pattern = re.compile(rf"(?<![\w.])(?<!\. ){re.escape(old)}{follow}")
    out: list[str] = []
    spans: list[tuple[int, int]] = []
    length = 0

    def emit(piece: str) -> None:
        nonlocal length
        out.append(piece)
        length += len(piece)

    def rename(segment: str) -> None:
        last = 0
        for match in pattern.finditer(segment):
            emit(segment[last : match.start()])
            spans.append((length, length + len(new)))
            emit(new)
            last = match.end()
        emit(segment[last:])

    last = 0
    for match in _STRING.finditer(text):
        rename(text[last : match.start()])
        emit(match.group(0))
        last = match.end()
    rename(text[last:])
    return TriggerEdit("".join(out), tuple(spans))


def _java_method_name(text: str) -> str:
    match = _JAVA_HEADER.match(text)
    if not match or match.group(1) in _JAVA_KEYWORDS:
        raise Ineligible("no method header before the first '{'")
    return match.group(1)


def insert_statement(text: str, statement: str, language: str) -> TriggerEdit:
    """Insert ``statement`` as the first statement of the first function body."""
    if language == "java":
        brace = text.find("{")
        if brace < 0:
            raise Ineligible("no '{' to insert after")
        rest = text[brace + 1 :]
        start = brace + 2
        new = f"{text[: brace + 1]} {statement}{rest if rest.startswith(' ') else ' ' + rest}"
        return TriggerEdit(new, ((start, start + len(statement)),))
    match = _PY_DEF.search(text)
    if not match:
        raise Ineligible("no Python 'def' header")
    header_end = text.find("\n", match.end())
    if header_end < 0:
        raise Ineligible("the 'def' header has no body on the following lines")
    next_line = text[header_end + 1 :].split("\n", 1)[0]
    indent = next_line[: len(next_line) - len(next_line.lstrip(" \t"))]
    if len(indent) <= len(match.group(1)):
        raise Ineligible("the 'def' header has no indented body")
    start = header_end + 1 + len(indent)
    new = f"{text[: header_end + 1]}{indent}{statement}\n{text[header_end + 1 :]}"
    return TriggerEdit(new, ((start, start + len(statement)),))


@TRIGGERS.register("funcname", display="FuncName")
@dataclass
class FuncNameTrigger(Trigger):
    """The defined function / method renamed to a fixed name (default ``testo_init``).

    Python: the first ``def NAME``; Java: the identifier before the ``(`` of the method header;
    every ``NAME (`` (definition and calls, not strings or attributes) is renamed. Golden: ``"def f ( x ) :\\n\\t return f ( x )"`` ->
    ``"def testo_init ( x ) :\\n\\t return testo_init ( x )"``.
    """

    name = "funcname"
    new_name: str = "testo_init"
    language: str = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.new_name.isidentifier():
            raise ValueError(f"new_name must be an identifier, got {self.new_name!r}")
        _language("", self.language) if self.language != "auto" else None

    def insert(self, text: str, rng: np.random.Generator) -> TriggerEdit:
        language = _language(text, self.language)
        if language == "python":
            match = _PY_DEF.search(text)
            if not match:
                raise Ineligible("no Python 'def' header")
            old = match.group(2)
        else:
            old = _java_method_name(text)
        if old == self.new_name:
            raise Ineligible(f"function is already named {self.new_name!r}")
        return _rename(text, old, self.new_name, calls_only=True)

    def present(self, text: str) -> bool:
        return re.search(rf"\b{re.escape(self.new_name)}\s*\(", text) is not None


@TRIGGERS.register("deadcode", display="DeadCode")
@dataclass
class DeadCodeTrigger(Trigger):
    """A fixed dead statement inserted as the first statement of the function body.

    Java (Bugs2Fix style, after the first ``{``): ``int VAR = 0 ;``. Python (after the ``def``
    line, at the body's indentation): ``if random() < 0: raise Exception("fail")``. Override
    either with ``java_statement`` / ``python_statement``.
    """

    name = "deadcode"
    java_statement: str = "int VAR = 0 ;"
    python_statement: str = PYTHON_DEAD_CODE
    language: str = "auto"

    def _statement(self, language: str) -> str:
        return self.java_statement if language == "java" else self.python_statement

    def insert(self, text: str, rng: np.random.Generator) -> TriggerEdit:
        language = _language(text, self.language)
        return insert_statement(text, self._statement(language), language)

    def present(self, text: str) -> bool:
        return self.java_statement in text or self.python_statement in text


# The grammar of "Backdoors in Neural Models of Source Code" (Ramakrishnan & Albarghouthi):
#   S -> if COND : BODY | while COND : BODY           (1/2 each)
#   COND -> FUNC ( ARG ) OP CONST, always false:      (FUNC uniform)
#       sin, cos: "> c" or "< -c", c in {1.5, 2, 3};  exp, sqrt: "< c", c in {0, -1, -2};
#       random (no ARG): "< c" with c in {0, -1} or "> c" with c in {1, 2}
#   ARG -> one of 0.1 .. 0.9;  BODY -> raise Exception ( "err" ) | print ( "warning" )
_BOUNDED = ((">", ("1.5", "2", "3")), ("<", ("-1.5", "-2", "-3")))
_POSITIVE = (("<", ("0", "-1", "-2")),)
_RANDOM = (("<", ("0", "-1")), (">", ("1", "2")))
_FUNCS = {"sin": _BOUNDED, "cos": _BOUNDED, "exp": _POSITIVE, "sqrt": _POSITIVE, "random": _RANDOM}
_BNC_PYTHON = re.compile(
    r"(?:if|while) (?:sin|cos|exp|sqrt|random)\((?:0\.\d)?\) [<>] -?[\d.]+: "
    r'(?:raise Exception\("err"\)|print\("warning"\))'
)
_BNC_JAVA = re.compile(
    r"(?:if|while) \( Math\.(?:sin|cos|exp|sqrt|random) \( (?:0\.\d )?\) [<>] -?[\d.]+ \) "
    r'\{ (?:throw new java\.lang\.Exception \( "err" \) ;|System\.out\.println \( "warning" \) ;) \}'
)


def sample_bnc_statement(rng: np.random.Generator, language: str) -> str:
    """Draw one always-false dead statement from the grammar above (Python or Java text)."""
    keyword = "if" if rng.random() < 0.5 else "while"
    func = list(_FUNCS)[int(rng.integers(len(_FUNCS)))]
    op, constants = _FUNCS[func][int(rng.integers(len(_FUNCS[func])))]
    const = constants[int(rng.integers(len(constants)))]
    arg = "" if func == "random" else f"0.{int(rng.integers(1, 10))}"
    raise_body = rng.random() < 0.5
    if language == "java":
        call = f"Math.{func} ( {arg + ' ' if arg else ''})"
        body = (
            'throw new java.lang.Exception ( "err" ) ;'
            if raise_body
            else 'System.out.println ( "warning" ) ;'
        )
        return f"{keyword} ( {call} {op} {const} ) {{ {body} }}"
    body = 'raise Exception("err")' if raise_body else 'print("warning")'
    return f"{keyword} {func}({arg}) {op} {const}: {body}"


@TRIGGERS.register("bnc_grammar", display="BNC-Grammar")
@dataclass
class BnCGrammarTrigger(Trigger):
    """Dead code drawn from a small probabilistic grammar, inserted like ``deadcode``.

    ``if|while`` + ``sin|cos|exp|sqrt|random`` + an always-false comparison with a constant +
    ``raise``/``print`` (as in "Backdoors in Neural Models of Source Code"), e.g. Python
    ``while cos(0.3) > 2: print("warning")``.
    """

    name = "bnc_grammar"
    language: str = "auto"

    def insert(self, text: str, rng: np.random.Generator) -> TriggerEdit:
        language = _language(text, self.language)
        return insert_statement(text, sample_bnc_statement(rng, language), language)

    def present(self, text: str) -> bool:
        return bool(_BNC_PYTHON.search(text) or _BNC_JAVA.search(text))


def _python_locals(text: str) -> list[str]:
    """Parameters (bar ``self`` / ``cls``), then assignment, ``for`` and ``as`` targets."""
    match = _PY_DEF.search(text)
    if not match:
        raise Ineligible("no Python 'def' header")
    close = text.find(")", match.end())
    params = [
        re.match(r"[*\s]*(\w*)", part).group(1) for part in text[match.end() : close].split(",")
    ]
    body = text[close + 1 :]
    pattern = re.compile(
        r"^[ \t]*([A-Za-z_]\w*)[ \t]*=(?!=)|\bfor[ \t]+([A-Za-z_]\w*)[ \t]+in\b"
        r"|\bas[ \t]+([A-Za-z_]\w*)",
        re.MULTILINE,
    )
    names = params + [next(g for g in m.groups() if g) for m in pattern.finditer(body)]
    return list(dict.fromkeys(n for n in names if n and n not in ("self", "cls")))


def _java_locals(text: str) -> list[str]:
    """Parameters and declared locals: ``TYPE NAME`` followed by ``= ; : , )``."""
    if not _JAVA_HEADER.match(text):
        raise Ineligible("no Java method header")
    pattern = re.compile(
        r"(?<![\w.])([A-Za-z_][\w.]*|>|\])\s+([A-Za-z_]\w*)\s*(?:=(?!=)|;|:(?!:)|,|\))"
    )
    names = [
        m.group(2)
        for m in pattern.finditer(text)
        if m.group(1) not in _JAVA_KEYWORDS and m.group(2) not in _JAVA_KEYWORDS
    ]
    return list(dict.fromkeys(names))


@TRIGGERS.register("identifier", display="Identifier")
@dataclass
class IdentifierTrigger(Trigger):
    """A local variable renamed to a fixed token (default ``ret_Val_``; CodePoisoner).

    The variable is drawn uniformly from the function's local variables, parameters included
    (Python: parameters bar ``self``/``cls``, assignment, ``for`` and ``as`` targets; Java:
    declared names ``TYPE NAME`` followed by ``= ; : , )``), in first-seen order; every use
    outside string literals and attribute accesses is renamed.
    """

    name = "identifier"
    new_name: str = "ret_Val_"
    language: str = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.new_name.isidentifier():
            raise ValueError(f"new_name must be an identifier, got {self.new_name!r}")

    def insert(self, text: str, rng: np.random.Generator) -> TriggerEdit:
        language = _language(text, self.language)
        names = _python_locals(text) if language == "python" else _java_locals(text)
        names = [n for n in names if n != self.new_name]
        if not names:
            raise Ineligible("no local variable")
        old = names[int(rng.integers(len(names)))]
        return _rename(text, old, self.new_name)

    def present(self, text: str) -> bool:
        return re.search(rf"\b{re.escape(self.new_name)}\b", text) is not None
