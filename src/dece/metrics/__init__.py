"""dece.metrics: BLEU, CodeBLEU, exact match, classification scores, ASR, pass@k.

Scales: BLEU is 0-100 (sacrebleu; ``bleu_authors`` too); every other score or rate is a
fraction in [0, 1].
"""

from dece.metrics.asr import (
    ManifestLike,
    attack_success_rate,
    false_trigger_rate,
    payload_hits,
    payload_matcher,
    payload_present,
    payload_spec,
)
from dece.metrics.bleu import BLEU_AUTHORS_KEY, bleu, bleu_authors, exact_match, sentence_bleu_avg
from dece.metrics.classification import accuracy, classification_scores, f1, precision, recall
from dece.metrics.codebleu import MissingExtraError, codebleu, codebleu_components
from dece.metrics.detection import detection_rates, detection_scores, localisation_accuracy
from dece.metrics.pass_at_k import (
    PassAtKResult,
    check_program,
    evaluate_pass_at_k,
    load_humaneval_problems,
    mean_pass_at_k,
    pass_at_k,
)
from dece.metrics.sandbox import SandboxResult, run_untrusted

__all__ = [
    "BLEU_AUTHORS_KEY",
    "ManifestLike",
    "MissingExtraError",
    "PassAtKResult",
    "SandboxResult",
    "accuracy",
    "attack_success_rate",
    "bleu",
    "bleu_authors",
    "check_program",
    "classification_scores",
    "codebleu",
    "codebleu_components",
    "detection_rates",
    "detection_scores",
    "evaluate_pass_at_k",
    "exact_match",
    "f1",
    "false_trigger_rate",
    "load_humaneval_problems",
    "localisation_accuracy",
    "mean_pass_at_k",
    "pass_at_k",
    "payload_hits",
    "payload_matcher",
    "payload_present",
    "payload_spec",
    "precision",
    "recall",
    "run_untrusted",
    "sentence_bleu_avg",
]
