"""One grid result row of a CE cell on a DeadCode attack, for the purifier-report tests."""

from dece.experiments.results import ResultRow


def purifier_row(defense: str, label: str, final: dict, order: int) -> ResultRow:
    """Cell ``h<order>`` of grid ``g`` with defense ``defense`` (labelled ``label``; ``order``
    places it on the defense axis) and final metrics ``final``."""
    values = {
        "dataset": "d",
        "attack": {"trigger": "deadcode"},
        "rate": 0.05,
        "model": "m",
        "loss": {"name": "ce"},
        "defense": {"name": defense, "args": {}},
        "seed": 42,
    }
    labels = {"attack": "DeadCode", "loss": "CE", "defense": label}
    return ResultRow(f"h{order}", "g", values, labels, {"defense": order}, final)
