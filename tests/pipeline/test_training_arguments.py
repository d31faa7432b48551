"""The configured warm-up reaches the Trainer's scheduler, and the declared transformers floor is
one where it does: ``fit.training_arguments`` passes ``warmup_ratio`` as ``warmup_steps`` (a float
below 1), which transformers >= 5 reads as a ratio of the training steps and 4.x truncates to 0
steps (no warm-up at all)."""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path

import pytest
import transformers
from packaging.version import Version

from dece.pipeline.fit import training_arguments
from dece.training import TrainConfig

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"

#: The first transformers release whose ``TrainingArguments.get_warmup_steps`` reads a
#: ``warmup_steps`` below 1 as a ratio (huggingface/transformers#41326, released in 5.0).
RATIO_WARMUP_SINCE = Version("5.0")


def _declared_floor() -> Version:
    deps = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["dependencies"]
    found = [m for d in deps if (m := re.fullmatch(r"transformers>=([0-9.]+)", d.strip()))]
    assert len(found) == 1, f"one 'transformers>=X' requirement expected in {deps}"
    return Version(found[0].group(1))


def test_declared_transformers_floor_reads_a_fractional_warmup_as_a_ratio():
    floor = _declared_floor()
    assert floor >= RATIO_WARMUP_SINCE
    assert Version(transformers.__version__) >= floor  # the tested version satisfies the floor


@pytest.mark.parametrize("ratio", [0.0, 0.05, 0.1, 0.37])
@pytest.mark.parametrize("steps", [1, 7, 40, 1000])
def test_configured_warmup_reaches_the_scheduler(tmp_path, ratio, steps):
    """``Trainer.create_scheduler`` asks ``args.get_warmup_steps(max_steps)``: it must be the
    configured fraction of the steps, rounded up (what ``warmup_ratio`` meant)."""
    cfg = TrainConfig(output_dir=str(tmp_path), warmup_ratio=ratio, use_cpu=True).resolved()
    args = training_arguments(cfg, tmp_path / "checkpoints")
    assert args.get_warmup_steps(steps) == math.ceil(ratio * steps)


def test_scheduler_learning_rate_rises_over_the_warmup(tmp_path):
    """The linear schedule the Trainer builds from these arguments: 0 at step 0, the full rate
    after ceil(0.1 * 40) = 4 warm-up steps, then decaying."""
    import torch

    cfg = TrainConfig(output_dir=str(tmp_path), warmup_ratio=0.1, learning_rate=1.0,
                      lr_scheduler="linear", use_cpu=True).resolved()  # fmt: skip
    args = training_arguments(cfg, tmp_path / "checkpoints")
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = transformers.get_scheduler(
        args.lr_scheduler_type, optimizer, num_warmup_steps=args.get_warmup_steps(40),
        num_training_steps=40,
    )  # fmt: skip
    rates = []
    for _ in range(6):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert rates[:5] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert rates[5] == pytest.approx(35 / 36)
