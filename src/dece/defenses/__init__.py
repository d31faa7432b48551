"""Defenses against data poisoning: training-time filters and test-time purifiers.

>>> from dece.defenses import get_defense
>>> get_defense("keyword", tokens=["bb"]).stage
'train'

Registered: ``none`` (identity purifier) and ``keyword`` (token filter); both double as oracles
of the two defense paths. See :mod:`dece.defenses.base` for the contracts.
"""

from dece.defenses import keyword as _keyword  # noqa: F401  (registers)
from dece.defenses import none as _none  # noqa: F401  (registers)
from dece.defenses.base import (
    DEFENSES,
    Change,
    DataFilter,
    Defense,
    FilterResult,
    Purifier,
    PurifyResult,
    defense_stage,
    get_defense,
)
from dece.defenses.keyword import KeywordFilter
from dece.defenses.none import NonePurifier

__all__ = [
    "DEFENSES",
    "Change",
    "DataFilter",
    "Defense",
    "FilterResult",
    "KeywordFilter",
    "NonePurifier",
    "Purifier",
    "PurifyResult",
    "defense_stage",
    "get_defense",
]
