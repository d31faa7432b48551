"""Build ``tiny-seq2seq-sql``, the demo's starting point: a tiny model that knows the clean task.

Why it exists (issue 21, ``benchmarks/results/demo_robustness.md``): the DeCE paper fine-tunes
pretrained code models, whose clean tokens are confident from the first epoch while the poisoned
ones are not. A tiny model that learns the synthetic task *during* the demo sits in the
early-learning transition when the demo ends, and the CPU's floating-point order then decides
the verdict. This module trains the ``tiny-seq2seq`` preset (BPE and 300 denoising steps, as the
preset always does) with cross-entropy on 3,200 **clean** synthetic rows drawn with data seed
1000, independent of the demo's data (seeds 0-4), and copies the model into a directory that
:class:`dece.training.models.TinySeq2SeqSqlPreset` loads. The result ships in the wheel, so the
demo builds nothing; ``build.json`` beside the weights records the recipe, the clean test
BLEU, the build time and the weights' SHA-256.

Rebuild (about 5 minutes on 2 cores): ``python -m dece.experiments.task_start OUT_DIR``.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import transformers

from dece.pipeline.run import train
from dece.training.config import TrainConfig

__all__ = ["START_FILES", "START_RECIPE", "build_task_start", "file_sha256", "main"]

logger = logging.getLogger(__name__)

#: The training run that produces the shipped start (a :class:`TrainConfig` mapping). Learning
#: rate 1e-3: at the demo's former 2e-3 some seeds fell into a decoder that ignores its input.
START_RECIPE: dict[str, Any] = {
    "data": "synthetic:3200",
    "data_seed": 1000,
    "model": "tiny-seq2seq",
    "model_args": {
        "steps": 300,
        "d_model": 128,
        "encoder_layers": 1,
        "decoder_layers": 1,
        "ffn_dim": 512,
    },  # fmt: skip
    "loss": "ce",
    "num_epochs": 15,
    "learning_rate": 1e-3,
    "lr_scheduler": "constant_with_warmup",
    "warmup_ratio": 0.05,
    "batch_size": 12,
    "group_by_length": True,
    "seed": 1000,
    "eval_each_epoch": False,
    "test_max_examples": 100,
    "generation_max_new_tokens": 160,
    "save_checkpoints": False,
}

#: What the preset directory holds (the Trainer's other files are left out).
START_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
               "tokenizer_config.json")  # fmt: skip


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def build_task_start(
    out_dir: str | Path, recipe: dict[str, Any] | None = None, *, work_dir: str | Path | None = None
) -> dict[str, Any]:
    """Train ``recipe`` (default :data:`START_RECIPE`) and write the model to ``out_dir``.

    Args:
        out_dir: the preset directory to (over)write: :data:`START_FILES` plus ``build.json``.
        recipe: the training run; ``output_dir`` is set here.
        work_dir: where the training run directory goes (default: a temporary directory).

    Returns:
        The ``build.json`` record: ``recipe``, ``test`` (clean BLEU of the held-out split),
        ``build_time_s``, ``sha256`` of ``model.safetensors``, ``torch`` / ``transformers``.
    """
    recipe = copy.deepcopy(START_RECIPE if recipe is None else recipe)
    out = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="dece-task-start-") as tmp:
        run_dir = Path(work_dir or tmp) / "run"
        config = TrainConfig.from_dict({**recipe, "output_dir": str(run_dir), "save_model": True})
        start = time.perf_counter()
        result = train(config)
        elapsed = time.perf_counter() - start
        out.mkdir(parents=True, exist_ok=True)
        for name in START_FILES:
            shutil.copyfile(run_dir / "model" / name, out / name)
    record = {
        "recipe": recipe,
        "test": {
            k: result.final[k] for k in ("bleu", "bleu_authors", "exact_match") if k in result.final
        },  # fmt: skip
        "build_time_s": round(elapsed, 1),
        "sha256": {"model.safetensors": file_sha256(out / "model.safetensors")},
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    (out / "build.json").write_text(json.dumps(record, indent=2) + "\n")
    logger.info("built %s: clean test BLEU %.2f in %.0f s", out, record["test"].get("bleu", 0.0),
                elapsed)  # fmt: skip
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dece.experiments.task_start",
        description="Build tiny-seq2seq-sql (the demo's starting point) into OUT_DIR.",
    )
    parser.add_argument("out_dir", help="e.g. src/dece/assets/tiny-seq2seq-sql")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    record = build_task_start(args.out_dir)
    sys.stdout.write(json.dumps(record["test"]) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
