"""Defenses against data poisoning: training-time filters and test-time purifiers.

>>> from dece.defenses import get_defense
>>> get_defense("keyword", tokens=["bb"]).stage
'train'

Registered (:data:`DEFENSES`): ``none`` (identity purifier) and ``keyword`` (token filter), which
double as oracles of the two defense paths; the training-time filters ``bki``, ``spectral``,
``activation_clustering``, ``naturalness`` and ``dynamics``; the training recipe
``moderate_fitting``; the test-time purifiers ``codepurify``, ``onion``, ``paraphrase`` and
``oseql``. See :mod:`dece.defenses.base` for the contracts.
"""

from dece.defenses import activation_clustering as _activation_clustering  # noqa: F401
from dece.defenses import bki as _bki  # noqa: F401  (registers)
from dece.defenses import codepurify as _codepurify  # noqa: F401  (registers)
from dece.defenses import dynamics as _dynamics  # noqa: F401  (registers)
from dece.defenses import keyword as _keyword  # noqa: F401  (registers)
from dece.defenses import moderate_fitting as _moderate_fitting  # noqa: F401  (registers)
from dece.defenses import naturalness as _naturalness  # noqa: F401  (registers)
from dece.defenses import none as _none  # noqa: F401  (registers)
from dece.defenses import onion as _onion  # noqa: F401  (registers)
from dece.defenses import oseql as _oseql  # noqa: F401  (registers)
from dece.defenses import paraphrase as _paraphrase  # noqa: F401  (registers)
from dece.defenses import spectral as _spectral  # noqa: F401  (registers)
from dece.defenses.activation_clustering import ActivationClusteringFilter
from dece.defenses.base import (
    DEFENSES,
    Change,
    DataFilter,
    Defense,
    FilterResult,
    Purifier,
    PurifyResult,
    TrainingRecipe,
    defense_stage,
    get_defense,
)
from dece.defenses.bki import BKIFilter
from dece.defenses.codepurify import CodePurify
from dece.defenses.dynamics import TrainingDynamicsFilter
from dece.defenses.keyword import KeywordFilter
from dece.defenses.moderate_fitting import ModerateFitting
from dece.defenses.naturalness import NaturalnessFilter
from dece.defenses.none import NonePurifier
from dece.defenses.onion import Onion
from dece.defenses.oseql import OSeqL
from dece.defenses.paraphrase import Paraphrase
from dece.defenses.spectral import SpectralSignatureFilter

__all__ = [
    "DEFENSES",
    "ActivationClusteringFilter",
    "BKIFilter",
    "Change",
    "CodePurify",
    "DataFilter",
    "Defense",
    "FilterResult",
    "KeywordFilter",
    "ModerateFitting",
    "NaturalnessFilter",
    "NonePurifier",
    "OSeqL",
    "Onion",
    "Paraphrase",
    "Purifier",
    "PurifyResult",
    "SpectralSignatureFilter",
    "TrainingDynamicsFilter",
    "TrainingRecipe",
    "defense_stage",
    "get_defense",
]
