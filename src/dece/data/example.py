"""The :class:`Example` record shared by loaders, attacks, training and metrics."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    """One (source, target) pair.

    Attributes:
        id: stable identifier; taken from an id column when the file has one, else
            ``f"{split}-{row_index}"`` with ``row_index`` the 0-based data row (header excluded).
        source: model input (an NL description, buggy code, ...).
        target: expected output (code, fixed code, ...).
        label: optional class label for classification tasks.
        source_pair: optional second input text (text-pair tasks such as clone detection); the
            tokenizer encodes ``(source, source_pair)`` as a text pair.
        trigger_region: optional ``(start, end)`` character range of ``source`` that a trigger
            may edit: a chat's last user message inside the rendered template
            (:mod:`dece.data.trl_records`); None: the whole source. Not written to data files.
    """

    id: str
    source: str
    target: str
    label: str | None = None
    source_pair: str | None = None
    trigger_region: tuple[int, int] | None = None

    @property
    def reference(self) -> str:
        """What a correct prediction equals: the label for classification, else the target."""
        return self.target if self.label is None else self.label


class DataError(ValueError):
    """Bad input data; the message names the file, row and column concerned."""


class DataFileNotFoundError(DataError, FileNotFoundError):
    """A data file or directory does not exist (also a :class:`FileNotFoundError`)."""


def check_examples(examples: Iterable[Example]) -> list[Example]:
    """``examples`` as a list; ValueError naming the first item that is not an :class:`Example`."""
    examples = list(examples)
    for i, ex in enumerate(examples):
        if not isinstance(ex, Example):
            raise ValueError(f"examples[{i}] is a {type(ex).__name__}, not a dece.data.Example")
    return examples
