"""Hugging Face ``datasets`` in and out: Hub ids, ``save_to_disk`` directories, parquet files, and
TRL's record formats.

In (through :func:`dece.data.load_dataset`, or :func:`examples_from_hf` for a dataset in memory):

- ``hf:<id>[:<config>]``: ``datasets.load_dataset(id, config)`` (the Hub, or its local cache with
  ``HF_HUB_OFFLINE=1``; offline and not cached is a :class:`DataError` saying so);
- a directory written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``;
- ``.parquet`` files (one file: the train split; a directory of ``train.parquet``, ... as for
  CSV / JSONL).

Split discovery: ``train``; ``valid``, ``validation`` or ``dev``; ``test`` (other splits are
left out, logged). A single ``Dataset`` is the train split.

Columns: ``source_col`` (default ``src``), ``target_col`` (``tgt``), ``label_col``, ``id_col``,
``pair_col`` as for CSV / JSONL. Without ``source_col`` and without a ``src`` column, TRL's
records are read (causal-LM fine-tuning data):

- ``prompt`` / ``completion`` strings: source = prompt, target = completion;
- ``messages`` (or conversational ``prompt`` + ``completion`` lists of ``{"role", "content"}``):
  the target is the last assistant turn, the source the chat template rendered up to that turn
  (``add_generation_prompt``), and a trigger edits only the last user message in it
  (:attr:`Example.trigger_region`). ``chat_template``: ``"chatml"`` (default), a Jinja template,
  or a tokenizer directory / id whose template is used.

Out: :func:`save_parquet` and :func:`save_hf` (``dece poison --format parquet|hf``).
Needs the ``[hf]`` extra (``datasets``, ``pyarrow``, ``jinja2``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dece.data.example import DataError, DataFileNotFoundError, Example
from dece.data.loaders import _SPLIT_ALIASES as SPLIT_ALIASES
from dece.data.loaders import _cell as cell_value

logger = logging.getLogger(__name__)

__all__ = [
    "CHATML",
    "HF_PREFIX",
    "ChatRenderer",
    "examples_from_hf",
    "is_saved_dataset",
    "load_hub",
    "load_parquet",
    "load_saved",
    "rows_to_examples",
    "save_hf",
    "save_parquet",
]

HF_PREFIX = "hf:"
_INSTALL = "pip install 'dece[hf]'"
#: The default chat template (ChatML), for data whose model has none of its own.
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
_SENTINEL = "\x00dece-user-turn\x00"


def _datasets() -> Any:
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - the extra is installed by `make venv`
        raise ImportError(
            f"Hugging Face datasets support needs the [hf] extra: {_INSTALL}"
        ) from exc
    return datasets


# --------------------------------------------------------------------------- sources
def load_hub(spec: str, **columns: Any) -> dict[str, list[Example]]:
    """``hf:<id>[:<config>]`` through ``datasets.load_dataset``; DataError naming the spec when
    the dataset cannot be had (offline and not cached, unknown id or config)."""
    name, _, config = spec[len(HF_PREFIX) :].partition(":")
    if not name:
        raise ValueError(f"data {spec!r}: expected 'hf:<id>' or 'hf:<id>:<config>'")
    datasets = _datasets()
    try:
        data = datasets.load_dataset(name, config or None)
    except Exception as exc:  # noqa: BLE001 - datasets raises many types; all mean "not loadable"
        raise DataError(f"data {spec!r}: {_hub_failure(exc)}") from exc
    return examples_from_hf(data, where=spec, **columns)


def _hub_failure(exc: Exception) -> str:
    from huggingface_hub import constants

    why = f"{type(exc).__name__}: {exc}"
    if constants.HF_HUB_OFFLINE:
        return (
            f"not in the local cache and HF_HUB_OFFLINE=1 forbids downloading it ({why}); load "
            "it once online, or pass a directory written by save_to_disk or parquet files"
        )
    return f"datasets.load_dataset failed ({why})"


def is_saved_dataset(path: str | Path) -> bool:
    """Whether ``path`` is a directory written by ``Dataset(Dict).save_to_disk``."""
    path = Path(path)
    return (path / "dataset_dict.json").is_file() or (
        (path / "state.json").is_file() and (path / "dataset_info.json").is_file()
    )


def load_saved(path: str | Path, **columns: Any) -> dict[str, list[Example]]:
    """The splits of a ``save_to_disk`` directory."""
    data = _datasets().load_from_disk(str(path))
    return examples_from_hf(data, where=str(path), **columns)


def load_parquet(path: str | Path, *, split: str | None = None, **columns: Any) -> list[Example]:
    """Every row of one parquet file as examples (ids ``f"{split}-{row}"`` without ``id_col``)."""
    path = Path(path)
    if not path.is_file():
        raise DataFileNotFoundError(f"{path}: no such file")
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover
        raise ImportError(f"parquet files need the [hf] extra: {_INSTALL}") from exc
    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow's errors for a bad file vary
        raise DataError(f"{path}: not a readable parquet file ({exc})") from None
    prefix = split if split is not None else path.stem
    return rows_to_examples(table.to_pylist(), table.column_names, where=str(path), split=prefix,
                            **columns)  # fmt: skip


def examples_from_hf(
    data: Any, *, where: str = "<dataset>", **columns: Any
) -> dict[str, list[Example]]:
    """A ``datasets.Dataset`` (the train split) or ``DatasetDict`` (split discovery, module
    docstring) as dece splits; ``columns`` as for :func:`rows_to_examples`."""
    datasets = _datasets()
    if isinstance(data, datasets.Dataset):
        data = {"train": data}
    elif not isinstance(data, (datasets.DatasetDict, Mapping)):
        raise ValueError(
            f"{where}: expected a datasets.Dataset or DatasetDict, got {type(data).__name__}"
        )
    found = _discover(dict(data), where)
    return {
        split: rows_to_examples(_rows(ds), ds.column_names, where=f"{where} [{name}]",
                                split=split, **_label_names(ds, columns), **columns)
        for split, (name, ds) in found.items()
    }  # fmt: skip


def _discover(data: dict[str, Any], where: str) -> dict[str, tuple[str, Any]]:
    found: dict[str, tuple[str, Any]] = {}
    for split, aliases in SPLIT_ALIASES.items():
        names = [n for n in aliases if n in data]
        if len(names) > 1:
            raise DataError(f"{where}: several splits for {split!r}: {', '.join(names)}")
        if names:
            found[split] = (names[0], data[names[0]])
    left = sorted(set(data) - {name for name, _ in found.values()})
    if left:
        logger.info("%s: splits %s are not train/valid/test; left out", where, left)
    if not found:
        raise DataError(f"{where}: no train/validation/test split (splits: {', '.join(data)})")
    return found


def _rows(dataset: Any) -> Iterable[dict[str, Any]]:
    return dataset.to_list() if hasattr(dataset, "to_list") else list(dataset)


def _label_names(dataset: Any, columns: Mapping[str, Any]) -> dict[str, Any]:
    """``label_names``: a ``ClassLabel`` label column's names (rows hold their indices)."""
    feature = getattr(dataset, "features", {}).get(columns.get("label_col") or "")
    names = getattr(feature, "names", None)
    return {"label_names": list(names)} if names else {}


# --------------------------------------------------------------------------- rows
def rows_to_examples(
    rows: Iterable[Mapping[str, Any]],
    column_names: Sequence[str],
    *,
    where: str,
    split: str,
    source_col: str | None = None,
    target_col: str | None = None,
    label_col: str | None = None,
    id_col: str | None = None,
    pair_col: str | None = None,
    optional_target: bool = False,
    chat_template: str | None = None,
    label_names: Sequence[str] | None = None,
) -> list[Example]:
    """Records (dicts) as :class:`Example`; errors name ``where``, the row and the column.

    Column records when ``source_col`` is given or a ``src`` column exists; else TRL records
    (module docstring). ``label_names``: the names of integer labels (a ``ClassLabel``).
    """
    columns = list(column_names)
    if source_col is None and "src" not in columns and _is_trl(columns):
        render = ChatRenderer(chat_template)
        examples = [
            _trl_example(row, i, where, split, id_col, render) for i, row in enumerate(rows)
        ]
    else:
        spec = _ColumnSpec(columns, where, source_col or "src", target_col, label_col, id_col,
                           pair_col, optional_target)  # fmt: skip
        examples = [spec.example(row, i, split, label_names) for i, row in enumerate(rows)]
    if not examples:
        raise DataError(f"{where}: empty (no rows)")
    _check_unique(examples, where, id_col)
    return examples


def _is_trl(columns: Sequence[str]) -> bool:
    return "messages" in columns or {"prompt", "completion"} <= set(columns)


class _ColumnSpec:
    """The columns in use, checked once against the dataset's columns."""

    def __init__(self, columns: list[str], where: str, source: str, target: str | None,
                 label: str | None, id_: str | None, pair: str | None, optional: bool) -> None:  # fmt: skip
        self.optional = optional or label is not None
        if target is None:
            target = "tgt"
        if self.optional and target not in columns:
            target = None  # inputs only (classification, purification)
        self.where, self.source, self.target, self.label, self.id, self.pair = (
            where, source, target, label, id_, pair)  # fmt: skip
        wanted = [c for c in (source, target, label, id_, pair) if c is not None]
        missing = [c for c in wanted if c not in columns]
        if missing:
            hint = "" if source != "src" else "; or TRL records: prompt/completion or messages"
            raise DataError(f"{where}: no column {missing[0]!r} (columns: {', '.join(columns)})"
                            f"{hint}")  # fmt: skip
        self.texts = {c for c in (source, target, pair) if c is not None}
        self.wanted = wanted

    def example(self, row: Mapping[str, Any], index: int, split: str,
                label_names: Sequence[str] | None) -> Example:  # fmt: skip
        values = {
            c: cell_value(self.where, index, c, row.get(c), text=c in self.texts,
                          optional=self.optional and c == self.target)
            for c in self.wanted
        }  # fmt: skip
        label = values[self.label] if self.label is not None else None
        if label is not None and label_names is not None and label.lstrip("-").isdigit():
            label = label_names[int(label)]
        return Example(
            id=values[self.id] if self.id is not None else f"{split}-{index}",
            source=values[self.source],
            target=values[self.target] if self.target is not None else "",
            label=label,
            source_pair=values[self.pair] if self.pair is not None else None,
        )


def _check_unique(examples: list[Example], where: str, id_col: str | None) -> None:
    seen: dict[str, int] = {}
    for index, ex in enumerate(examples):
        if ex.id in seen:
            raise DataError(f"{where}: row {index}, column {id_col!r}: duplicate id {ex.id!r} "
                            f"(first seen in row {seen[ex.id]})")  # fmt: skip
        seen[ex.id] = index


# --------------------------------------------------------------------------- TRL records
def _trl_example(
    row: Mapping[str, Any], index: int, where: str, split: str, id_col: str | None,
    render: ChatRenderer,
) -> Example:  # fmt: skip
    example_id = f"{split}-{index}"
    if id_col is not None:
        example_id = cell_value(where, index, id_col, row.get(id_col), text=False, optional=False)
    if "messages" in row:
        messages = row["messages"]
        column = "messages"
    elif isinstance(row["prompt"], str):
        source = cell_value(where, index, "prompt", row["prompt"], text=True, optional=False)
        target = cell_value(where, index, "completion", row["completion"], text=True,
                            optional=False)  # fmt: skip
        return Example(id=example_id, source=source, target=target)
    else:  # conversational prompt-completion: the completion continues the prompt's turns
        messages = list(row["prompt"] or []) + list(row["completion"] or [])
        column = "prompt/completion"
    turns = _check_messages(messages, where, index, column)
    source, region, target = render.split(turns, f"{where}: row {index}, column {column!r}")
    return Example(id=example_id, source=source, target=target, trigger_region=region)


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


# --------------------------------------------------------------------------- out
def save_parquet(rows: Sequence[Mapping[str, Any]], path: str | Path) -> None:
    """Write dict rows (one key set) to a parquet file."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover
        raise ImportError(f"parquet files need the [hf] extra: {_INSTALL}") from exc
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(list(rows)), path)


def save_hf(splits: Mapping[str, Sequence[Mapping[str, Any]]], path: str | Path) -> None:
    """Write ``{split: dict rows}`` as one ``DatasetDict`` with ``save_to_disk``."""
    datasets = _datasets()
    data = datasets.DatasetDict(
        {split: datasets.Dataset.from_list(list(rows)) for split, rows in splits.items()}
    )
    data.save_to_disk(str(path))
