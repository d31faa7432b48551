"""The experiment as stages with typed values between them::

    prepare_data ─> [DataFilter.score] ─> fit ─> Victim ─> [Purifier.purify] ─> evaluate
     DataBundle       FilterResult        FitResult        PurifyResult          EvalResult

``train(config)`` is their composition (and writes the run directory); each stage is usable on
its own, e.g. with a bundle built from examples in memory::

    from dece.pipeline import DataBundle, evaluate, fit
    bundle = DataBundle.from_examples(train_rows, valid_rows, test_rows,
                                      trigger="badpre", payload="sql_injection", rate=0.05)
    fitted = fit(TrainConfig(output_dir="runs/x", model="tiny-seq2seq"), bundle)
    print(evaluate(fitted.victim, bundle, split="test").metrics)
"""

from dece.pipeline.data import DataBundle, EvalSet, dataset_labels, prepare_data
from dece.pipeline.evaluation import EvalResult, evaluate, score_outputs, write_predictions
from dece.pipeline.fit import FitResult, fit, load_starting_model, prepare_model
from dece.pipeline.run import TrainResult, apply_filter, evaluate_run, train
from dece.victim import Victim

__all__ = [
    "DataBundle",
    "EvalResult",
    "EvalSet",
    "FitResult",
    "TrainResult",
    "Victim",
    "apply_filter",
    "dataset_labels",
    "evaluate",
    "evaluate_run",
    "fit",
    "load_starting_model",
    "prepare_data",
    "prepare_model",
    "score_outputs",
    "train",
    "write_predictions",
]
