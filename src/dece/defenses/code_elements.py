"""The elements CodePurify masks: identifiers and statements of code (tree-sitter), words of text.

- **identifier**: every distinct identifier name (``identifier``, ``type_identifier``,
  ``field_identifier`` leaves, the function's own name included) with *all* its occurrences;
- **statement**: every syntactically complete statement, a multi-line ``if``/``for``/``while``
  with its body included (tree-sitter nodes whose type ends in ``_statement`` or ``_declaration``
  of a local variable, bar bare blocks), nested ones too; masking one keeps its reserved keywords
  and masks every other lexical token (``mask_spans``);
- **word** (natural-language inputs, e.g. Lyra's descriptions): every distinct whitespace-separated
  word with all its occurrences.

Everything is in character offsets of the text given (tree-sitter reports bytes; they are mapped
back). Java snippets that are a bare method (Bugs2Fix) are parsed inside ``class _ { ... }``.
Tree-sitter is the parser the issue pins (``tree-sitter==0.22.3`` with the python/java/c grammar
wheels, the ``[codebleu]`` extra); no regex re-implementation of a grammar here.
"""

from __future__ import annotations

import functools
import keyword
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Element",
    "LANGUAGES",
    "detect_language",
    "extract_elements",
    "truncation_cutoff",
    "lexical_tokens",
    "replace_spans",
]

LANGUAGES = ("python", "java", "c", "text")

_JAVA_KEYWORDS = frozenset(
    """abstract assert boolean break byte case catch char class const continue default do double
    else enum extends final finally float for goto if implements import instanceof int interface
    long native new package private protected public return short static strictfp super switch
    synchronized this throw throws transient try void volatile while var yield record true false
    null""".split()
)
_C_KEYWORDS = frozenset(
    """auto break case char const continue default do double else enum extern float for goto if
    inline int long register restrict return short signed sizeof static struct switch typedef
    union unsigned void volatile while _Bool _Complex _Imaginary bool true false NULL""".split()
)
_PY_KEYWORDS = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist)
KEYWORDS: dict[str, frozenset[str]] = {
    "python": _PY_KEYWORDS, "java": _JAVA_KEYWORDS, "c": _C_KEYWORDS, "text": frozenset(),
}  # fmt: skip

_IDENTIFIER_TYPES = frozenset({"identifier", "type_identifier", "field_identifier"})
_ATOMIC_TYPES = ("string", "char", "character_literal")  # literals kept whole as one token
_NOT_STATEMENTS = frozenset(
    {"block", "compound_statement", "function_definition", "method_declaration",
     "class_declaration", "class_definition", "constructor_declaration", "program", "module",
     "translation_unit", "field_declaration", "declaration_list", "class_body"}
)  # fmt: skip
_STATEMENT_TYPES = frozenset({"local_variable_declaration", "declaration"})
_JAVA_WRAP = "class _ {\n"
_JAVA_UNIT = re.compile(r"\s*(package|import|(public\s+|final\s+|abstract\s+)*class)\b")
_PY_HINT = re.compile(r"^\s*(def|class|import|from)\s", re.MULTILINE)


@dataclass(frozen=True)
class Element:
    """One maskable element of an input.

    Attributes:
        kind: ``"identifier"``, ``"statement"`` or ``"word"``.
        text: the identifier / word, or the statement's text.
        spans: where the element is: every occurrence (identifiers, words) or the statement's
            extent, as ``(start, end)`` character offsets.
        mask_spans: the character spans masked when the element is masked (identifiers and words:
            ``spans``; statements: each non-keyword lexical token inside it).
        side: ``"source"`` or ``"pair"`` (the second text of a text pair).
    """

    kind: str
    text: str
    spans: tuple[tuple[int, int], ...]
    mask_spans: tuple[tuple[int, int], ...]
    side: str = "source"


def detect_language(text: str) -> str:
    """``"python"`` when the text has a ``def``/``class``/``import`` line, ``"java"`` when it has
    both ``{`` and ``;``, else ``"text"`` (natural language: word level)."""
    if _PY_HINT.search(text):
        return "python"
    if "{" in text and ";" in text:
        return "java"
    return "text"


@functools.cache
def _parser(language: str) -> Any:
    try:
        from tree_sitter import Language, Parser
    except ImportError as exc:  # pragma: no cover - the extra is installed in CI
        raise ImportError(
            "CodePurify's code elements need tree-sitter: pip install 'dece[codebleu]'"
        ) from exc
    module = {"python": "tree_sitter_python", "java": "tree_sitter_java", "c": "tree_sitter_c"}
    import importlib

    try:
        grammar = importlib.import_module(module[language])
    except ImportError as exc:  # pragma: no cover
        raise ImportError(
            f"the {language} grammar is missing: pip install 'dece[codebleu]'"
        ) from exc
    return Parser(Language(grammar.language()))


@dataclass(frozen=True)
class _Leaf:
    start: int
    end: int
    type: str


def _parse(text: str, language: str) -> tuple[Any, Callable[[int], int], int]:
    """The tree, a byte-offset -> character-offset map and the wrapper's length in characters."""
    bare = language == "java" and not _JAVA_UNIT.match(text)
    wrap = _JAVA_WRAP if bare else ""
    full = f"{wrap}{text}\n}}" if wrap else text
    data = full.encode("utf-8")
    if len(data) == len(full):  # ASCII: bytes are characters

        def to_char(b: int) -> int:
            return b
    else:
        starts = [0]
        for ch in full:
            starts.append(starts[-1] + len(ch.encode("utf-8")))
        index = {b: i for i, b in enumerate(starts)}

        def to_char(b: int) -> int:
            return index[b]

    return _parser(language).parse(data), to_char, len(wrap)


def _walk(
    tree: Any, to_char: Callable[[int], int], offset: int, n: int
) -> tuple[list[_Leaf], list[tuple[int, int]]]:
    """Lexical leaves and statement extents inside the user's text (wrapper excluded)."""
    leaves: list[_Leaf] = []
    statements: list[tuple[int, int]] = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        start, end = to_char(node.start_byte) - offset, to_char(node.end_byte) - offset
        kind = node.type
        if (
            node.is_named
            and kind not in _NOT_STATEMENTS
            and (kind.endswith("_statement") or kind in _STATEMENT_TYPES)
            and 0 <= start < end <= n
        ):
            statements.append((start, end))
        atomic = any(a in kind for a in _ATOMIC_TYPES) and node.is_named
        if (node.child_count == 0 or atomic) and 0 <= start < end <= n:
            leaves.append(_Leaf(start, end, kind))
            continue
        stack.extend(reversed(node.children))
    leaves.sort(key=lambda x: x.start)
    statements = sorted(set(statements))
    return leaves, statements


def lexical_tokens(text: str, language: str) -> list[tuple[int, int, str]]:
    """``(start, end, type)`` of every lexical token of ``text`` (tree-sitter leaves; whole
    string/char literals), in order. ``"text"``: the whitespace-separated words."""
    if language == "text":
        return [(m.start(), m.end(), "word") for m in re.finditer(r"\S+", text)]
    tree, to_char, offset = _parse(text, language)
    leaves, _ = _walk(tree, to_char, offset, len(text))
    return [(leaf.start, leaf.end, leaf.type) for leaf in leaves]


def extract_elements(
    text: str,
    language: str = "auto",
    *,
    kinds: Sequence[str] = ("identifier", "statement"),
    keep: str = "keywords",
    side: str = "source",
) -> list[Element]:
    """The elements of ``text`` (module docstring), identifiers first (in order of first
    occurrence), then statements (in order of their start).

    Args:
        language: ``"python"``, ``"java"``, ``"c"``, ``"text"`` or ``"auto"``
            (:func:`detect_language`). ``"text"`` gives words whatever ``kinds`` says.
        kinds: which of ``"identifier"`` / ``"statement"`` to extract (code).
        keep: what a masked statement keeps: ``"keywords"`` (the paper: every other token is
            masked) or ``"keywords+punctuation"`` (the official code also keeps punctuation).
    """
    if language == "auto":
        language = detect_language(text)
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {LANGUAGES} or 'auto', got {language!r}")
    if keep not in ("keywords", "keywords+punctuation"):
        raise ValueError(f"keep must be 'keywords' or 'keywords+punctuation', got {keep!r}")
    if language == "text":
        return _words(text, side)
    tree, to_char, offset = _parse(text, language)
    leaves, statements = _walk(tree, to_char, offset, len(text))
    words = KEYWORDS[language]
    out: list[Element] = []
    if "identifier" in kinds:
        occurrences: dict[str, list[tuple[int, int]]] = {}
        for leaf in leaves:
            name = text[leaf.start : leaf.end]
            if leaf.type in _IDENTIFIER_TYPES and name not in words:
                occurrences.setdefault(name, []).append((leaf.start, leaf.end))
        out += [Element("identifier", k, tuple(v), tuple(v), side) for k, v in occurrences.items()]
    if "statement" in kinds:
        for start, end in statements:
            masked = tuple(
                (leaf.start, leaf.end) for leaf in leaves
                if start <= leaf.start and leaf.end <= end
                and not _kept(text[leaf.start : leaf.end], words, keep)
            )  # fmt: skip
            if masked:
                out.append(Element("statement", text[start:end], ((start, end),), masked, side))
    return out


def _kept(token: str, words: frozenset[str], keep: str) -> bool:
    if token in words:
        return True
    return keep == "keywords+punctuation" and not any(c.isalnum() or c == "_" for c in token)


def _words(text: str, side: str) -> list[Element]:
    occurrences: dict[str, list[tuple[int, int]]] = {}
    for m in re.finditer(r"\S+", text):
        occurrences.setdefault(m.group(0), []).append((m.start(), m.end()))
    return [Element("word", k, tuple(v), tuple(v), side) for k, v in occurrences.items()]


def replace_spans(
    text: str, spans: Sequence[tuple[int, int]], replacement: Callable[[int, str], str]
) -> str:
    """``text`` with each ``text[start:end]`` (non-overlapping spans) replaced by
    ``replacement(i, old)`` (``i``: the span's index in ``spans``)."""
    order = sorted(range(len(spans)), key=lambda i: spans[i][0])
    out, last = [], 0
    for i in order:
        start, end = spans[i]
        if start < last:
            raise ValueError(f"overlapping spans at {start} (previous ends at {last})")
        out.append(text[last:start])
        out.append(replacement(i, text[start:end]))
        last = end
    out.append(text[last:])
    return "".join(out)


def truncation_cutoff(tokenizer: Any, text: str, max_length: int) -> float:
    """The character offset where a ``max_length``-token encoding of ``text`` (special tokens
    included) stops: text from there on is cut off. ``inf`` when nothing is cut, or when the
    tokenizer cannot report offsets (a slow tokenizer: every element is kept)."""
    try:
        enc = tokenizer(text, truncation=True, max_length=max_length,
                        return_offsets_mapping=True)  # fmt: skip
        full = len(tokenizer(text)["input_ids"])
    except (NotImplementedError, TypeError, ValueError):
        return float("inf")
    if full <= len(enc["input_ids"]):
        return float("inf")
    ends = [end for start, end in enc["offset_mapping"] if end > start]
    return float(max(ends)) if ends else 0.0
