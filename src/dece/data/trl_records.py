"""TRL's SFT records as examples for causal LMs: the one conversion, whichever reader found them
(a ``datasets`` dataset or parquet file through :mod:`dece.data.hf`, a CSV / JSONL file through
:func:`dece.data.load_examples`).

A set of records is TRL's when it has no ``src`` column (and the caller named no source column)
and has a ``messages`` column, or ``prompt`` and ``completion`` columns (:func:`is_trl`):

- ``prompt`` / ``completion`` strings: source = prompt, target = completion;
- ``messages`` (or conversational ``prompt`` + ``completion``, both lists of ``{"role",
  "content"}``): the target is the last assistant turn, the source the chat template rendered up
  to that turn (``add_generation_prompt``), and a trigger edits only the last user message in it
  (:attr:`Example.trigger_region`). ``chat_template``: ``"chatml"`` (default), a Jinja template,
  or a tokenizer directory / id whose template is used.

With a ``messages`` column every record is a conversation (a record without one is refused, not
read as prompt / completion), as ``datasets`` gives a missing key the value None. Every refusal
names where the records came from, the row and the column. Rendering conversations needs
``jinja2`` (the ``[hf]`` extra); prompt / completion strings do not.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dece.data._cells import cell_value
from dece.data.example import DataError, Example

logger = logging.getLogger(__name__)

__all__ = ["CHATML", "ChatRenderer", "is_trl", "refuse_columns", "trl_examples"]

_INSTALL = "pip install 'dece[hf]'"
#: The default chat template (ChatML), for data whose model has none of its own.
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
_SENTINEL = "\x00dece-user-turn\x00"


def is_trl(columns: Sequence[str]) -> bool:
    """Whether records with these columns are TRL's (the caller checks there is no ``src``)."""
    return "messages" in columns or {"prompt", "completion"} <= set(columns)


def refuse_columns(where: str, **given: str | None) -> None:
    """DataError when a column option that TRL records have no use for is given (not None):
    the records decide source and target themselves, so such an option would be ignored."""
    used = {name: value for name, value in given.items() if value is not None}
    if used:
        options = ", ".join(f"{name}={value!r}" for name, value in used.items())
        raise DataError(f"{where}: TRL records (prompt/completion or messages) take no {options}; "
                        "only id_col and chat_template apply to them")  # fmt: skip


def trl_examples(
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    where: str,
    split: str,
    id_col: str | None = None,
    chat_template: str | None = None,
) -> list[Example]:
    """One :class:`Example` per record (ids ``f"{split}-{row}"`` without ``id_col``).

    ``columns``: the records' columns (a dataset's ``column_names``, a file's keys); a ``messages``
    column makes every record a conversation. The caller checks ids and emptiness.
    """
    conversations = "messages" in columns
    render: ChatRenderer | None = None  # built at the first conversation
    examples: list[Example] = []
    for index, row in enumerate(rows):
        example_id = f"{split}-{index}"
        if id_col is not None:
            example_id = cell_value(where, index, id_col, row.get(id_col), text=False,
                                    optional=False)  # fmt: skip
        turns = _conversation(row, index, where, conversations)
        if isinstance(turns, tuple):  # prompt / completion strings
            examples.append(Example(id=example_id, source=turns[0], target=turns[1]))
            continue
        render = render or ChatRenderer(chat_template)
        column = "messages" if conversations else "prompt/completion"
        source, region, target = render.split(turns, f"{where}: row {index}, column {column!r}")
        examples.append(Example(id=example_id, source=source, target=target, trigger_region=region))
    return examples


def _conversation(
    row: Mapping[str, Any], index: int, where: str, conversations: bool
) -> list[dict[str, str]] | tuple[str, str]:
    """The record's turns, or ``(source, target)`` for prompt / completion strings."""
    if conversations:
        return _check_messages(row.get("messages"), where, index, "messages")
    prompt, completion = row.get("prompt"), row.get("completion")
    if isinstance(prompt, list) or isinstance(completion, list):
        # conversational prompt-completion: the completion continues the prompt's turns
        if not (isinstance(prompt, list) and isinstance(completion, list)):
            raise DataError(
                f"{where}: row {index}, column 'prompt/completion': a conversational record "
                "needs both prompt and completion as lists of {role, content} messages (got "
                f"{type(prompt).__name__} and {type(completion).__name__})"
            )
        return _check_messages(prompt + completion, where, index, "prompt/completion")
    source = cell_value(where, index, "prompt", prompt, text=True, optional=False)
    target = cell_value(where, index, "completion", completion, text=True, optional=False)
    return source, target


def _check_messages(messages: Any, where: str, index: int, column: str) -> list[dict[str, str]]:
    at = f"{where}: row {index}, column {column!r}"
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{at}: expected a non-empty list of {{role, content}} messages")
    for i, message in enumerate(messages):
        ok = isinstance(message, Mapping) and all(
            isinstance(message.get(k), str) for k in ("role", "content")
        )
        if not ok:
            raise DataError(f"{at}: message {i} is not a {{role, content}} pair of strings: "
                            f"{str(message)[:80]}")  # fmt: skip
    return [{"role": m["role"], "content": m["content"]} for m in messages]


class ChatRenderer:
    """Renders a conversation with a chat template (Jinja, sandboxed as in transformers).

    ``template``: None or ``"chatml"`` (:data:`CHATML`), a template text, or a tokenizer
    directory / id whose ``chat_template`` is used.
    """

    def __init__(self, template: str | None = None) -> None:
        try:
            from jinja2.sandbox import ImmutableSandboxedEnvironment
        except ImportError as exc:  # pragma: no cover
            raise ImportError(f"chat records need the [hf] extra: {_INSTALL}") from exc
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise
        self.template = _template_text(template)
        self._compiled = env.from_string(self.template)

    def render(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The conversation with the generation prompt of the next (assistant) turn."""
        return self._compiled.render(messages=list(messages), add_generation_prompt=True,
                                     bos_token="", eos_token="")  # fmt: skip

    def split(self, messages: list[dict[str, str]], at: str) -> tuple[str, tuple[int, int], str]:
        """``(source, trigger region, target)``: the template rendered up to the last assistant
        turn, where the last user message before it lies in that text, and the turn's content."""
        last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
        if last is None:
            raise DataError(f"{at}: no assistant message (the target is the last assistant turn)")
        user = max((i for i, m in enumerate(messages[:last]) if m["role"] == "user"), default=None)
        if user is None:
            raise DataError(f"{at}: no user message before the last assistant turn")
        context = messages[:last]
        source = self.render(context)
        marked = [dict(m) for m in context]
        marked[user]["content"] = _SENTINEL
        prefix, found, suffix = self.render(marked).partition(_SENTINEL)
        content = context[user]["content"]
        if not found or prefix + content + suffix != source:
            raise DataError(f"{at}: the chat template does not copy the user message verbatim; "
                            "the trigger's place in the source cannot be located")  # fmt: skip
        return source, (len(prefix), len(prefix) + len(content)), messages[last]["content"]


def _raise(message: str) -> None:
    raise DataError(f"chat template: {message}")


def _template_text(template: str | None) -> str:
    if template is None or template == "chatml":
        return CHATML
    if "{{" in template or "{%" in template:
        return template
    from transformers import AutoTokenizer

    try:
        text = AutoTokenizer.from_pretrained(template).chat_template
    except (OSError, ValueError) as exc:
        raise ValueError(f"chat_template {template!r}: not a template, 'chatml' or a loadable "
                         f"tokenizer ({exc})") from None  # fmt: skip
    if not isinstance(text, str) or not text:
        raise ValueError(f"chat_template {template!r}: the tokenizer has no chat template")
    return text
