"""Attack simulation: triggers and payloads (registries) combined by a poisoner with a manifest.

>>> from dece.attacks import poison_dataset
>>> from dece.data import load_dataset
>>> result = poison_dataset(load_dataset("synthetic:80")["train"], "badpre", "sql_injection",
...                         rate=0.05, seed=42)
>>> result.manifest.n_poisoned
4
"""

from dece.attacks import code as _code  # noqa: F401  (registers the code triggers)
from dece.attacks import nl as _nl  # noqa: F401  (registers the NL triggers)
from dece.attacks.base import (
    PAYLOADS,
    SIDES,
    TRIGGERS,
    Ineligible,
    Payload,
    Trigger,
    TriggerEdit,
    describe,
    get_payload,
    get_trigger,
)
from dece.attacks.code import (
    BnCGrammarTrigger,
    DeadCodeTrigger,
    FuncNameTrigger,
    IdentifierTrigger,
    sample_bnc_statement,
)
from dece.attacks.nl import BadPreTrigger, GrammarTrigger, RippleTrigger
from dece.attacks.payloads import (
    DeadCodePythonPayload,
    FixedOutputPayload,
    InfiniteLoopPayload,
    LabelFlipPayload,
    SQLInjectionPayload,
)
from dece.attacks.poisoner import PoisonManifest, PoisonResult, poison_dataset, poison_test_set
from dece.attacks.splits import poison_splits, write_poisoned_splits

__all__ = [
    "PAYLOADS",
    "TRIGGERS",
    "BadPreTrigger",
    "BnCGrammarTrigger",
    "DeadCodePythonPayload",
    "DeadCodeTrigger",
    "FixedOutputPayload",
    "FuncNameTrigger",
    "GrammarTrigger",
    "IdentifierTrigger",
    "Ineligible",
    "InfiniteLoopPayload",
    "LabelFlipPayload",
    "Payload",
    "PoisonManifest",
    "PoisonResult",
    "RippleTrigger",
    "SQLInjectionPayload",
    "SIDES",
    "Trigger",
    "TriggerEdit",
    "describe",
    "get_payload",
    "get_trigger",
    "poison_dataset",
    "poison_splits",
    "poison_test_set",
    "sample_bnc_statement",
    "write_poisoned_splits",
]
