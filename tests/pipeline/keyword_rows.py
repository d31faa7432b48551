"""A planted classification rule shared by the classifier tests: label ``"debt"`` iff the text
holds ``"todo"`` (every third row). Imported by module name (``from keyword_rows import ...``)."""

from __future__ import annotations

from dece.data import Example

WORDS = "get set put read write load save open close find sort move copy list show".split()


def keyword_rows(n: int, offset: int) -> list[Example]:
    """``n`` rows with ids ``r<offset>`` ...; every third one carries "todo" and label "debt"."""
    rows = []
    for i in range(offset, offset + n):
        words = [WORDS[(i * 7 + j) % len(WORDS)] for j in range(5)]
        label = "debt" if i % 3 == 0 else "none"
        if label == "debt":
            words.insert(i % 5, "todo")
        rows.append(Example(f"r{i}", " ".join(words), "", label=label))
    return rows
