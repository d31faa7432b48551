"""Markdown pipe tables: the one place that renders them, and the one that reads their cells back.

Every markdown table the project writes (``dece report``, the detection and purifier tables, the
benchmark scripts' results files) goes through :func:`md_table`, which hands the layout to
`tabulate <https://pypi.org/project/tabulate/>`_ (``tablefmt="pipe"``) rather than joining cells
with ``" | "`` by hand in each caller: tabulate is maintained, already installed with sacrebleu,
writes the alignment row (``---:`` right, ``:---`` left, ``:---:`` centre) from one spec, and
pads the columns so a results file also reads as a table in a plain-text diff. Cells are written
as given: number parsing is off (``"30.00"`` stays ``"30.00"``, ``"80.00†"`` and ``"-"`` are
text), and nothing is escaped.

:func:`md_table_cells` reads the cells back (split on ``|``, stripped) and :func:`md_unpadded`
writes a text's tables without padding: the oracles the tests use, since two renderings of a
table that differ only in padding give the same cells and the same unpadded text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tabulate import tabulate

__all__ = ["md_table", "md_table_cells", "md_unpadded"]

_ALIGN = {"l": "left", "r": "right", "c": "center"}


def md_table(headers: Sequence[str], rows: Iterable[Sequence[str]], align: str = "") -> str:
    """A markdown pipe table of ``headers`` and ``rows`` (strings, one per column), without a
    trailing newline.

    ``align`` has one letter per column: ``l`` (left), ``r`` (right: numbers) or ``c``
    (centre); ``""`` leaves every column left-aligned. ``ValueError`` names a row whose length
    differs from the header's, an ``align`` of the wrong length or letter, and a cell holding a
    newline (a pipe table row is one line).
    """
    headers = list(headers)
    body = [list(row) for row in rows]
    align = align or "l" * len(headers)
    if len(align) != len(headers) or set(align) - set(_ALIGN):
        raise ValueError(f"align={align!r}: expected one of l/r/c per column ({len(headers)})")
    for i, row in enumerate(body):
        if len(row) != len(headers):
            raise ValueError(f"row {i} has {len(row)} cells, the header {len(headers)}: {row!r}")
        for column, cell in zip(headers, row, strict=True):
            if "\n" in cell:
                raise ValueError(f"row {i}, column {column!r}: a newline in cell {cell!r}")
    return _compute_table(headers, body, [_ALIGN[a] for a in align])


def _compute_table(headers: list[str], body: list[list[str]], colalign: list[str]) -> str:
    # tabulate drops the alignment colons of a table without rows: render one empty row (it
    # widens no column) and cut it off.
    text = tabulate(body or [[""] * len(headers)], headers=headers, tablefmt="pipe",
                    colalign=colalign, disable_numparse=True)  # fmt: skip
    return text if body else text.rsplit("\n", 1)[0]


def md_table_cells(text: str) -> list[list[str]]:
    """The cells of every pipe-table line of ``text`` (a line starting with ``|``), each split on
    ``|`` and stripped; the alignment row (a table's second line) reads as its alignments:
    ``"---"`` (left, with or without the colon), ``"---:"`` (right) or ``":---:"`` (centre)."""
    return [cells for cells, _ in _parsed(text) if cells is not None]


def md_unpadded(text: str) -> str:
    """``text`` with every pipe-table line written without padding (``| a | b |``, alignment row
    ``|---|---:|``) and every other line as it is: a table as the hand-joined renderers wrote it
    before :func:`md_table`, so two renderings that differ in padding only compare equal."""
    lines = []
    for cells, line in _parsed(text):
        if cells is None:
            lines.append(line)
        elif line == "alignment":
            lines.append("|" + "|".join(cells) + "|")
        else:
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _parsed(text: str) -> list[tuple[list[str] | None, str]]:
    """Per line of ``text``: (its cells, ``"alignment"`` or ``"row"``) for a table line, else
    (None, the line)."""
    out: list[tuple[list[str] | None, str]] = []
    position = 0  # of the line within its table
    for line in text.split("\n"):
        stripped = line.rstrip()
        if not stripped.startswith("|"):
            position = 0
            out.append((None, line))
            continue
        inner = stripped[1:-1] if stripped.endswith("|") and len(stripped) > 1 else stripped[1:]
        cells = [c.strip() for c in inner.split("|")]
        if position == 1:
            out.append(([_alignment(c) for c in cells], "alignment"))
        else:
            out.append((cells, "row"))
        position += 1
    return out


def _alignment(cell: str) -> str:
    if not cell or set(cell) - set(":-"):
        return cell  # not an alignment cell: kept as written
    right, left = cell.endswith(":"), cell.startswith(":")
    return ":---:" if left and right else "---:" if right else "---"
