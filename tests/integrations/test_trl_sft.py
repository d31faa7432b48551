"""TrainerLoss in a real trl.SFTTrainer (prompt-completion data, completion-only loss) on a tiny
causal LM built from a config: the loss TRL logs equals a dense fp64 DeCE recomputed on the same
batch, and the epoch the loss uses advances."""

from __future__ import annotations

import warnings

import pytest
from test_hf_trainer import Recorder, dense_dece_sum
from tiny_setup import IGNORE
from transformers import AutoModelForCausalLM, AutoTokenizer

from dece.integrations import TrainerLoss

trl = pytest.importorskip("trl", reason="needs the [trl] extra: pip install 'dece[trl]'")
datasets = pytest.importorskip("datasets")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(
    "epoch_mode,expected", [("integer", [1, 1, 2, 2]), ("continuous", [1, 1.5, 2, 2.5])]
)
def test_sft_trainer_logs_the_dece_loss_and_advances_the_epoch(
    tiny_dir, rows, tmp_path, epoch_mode, expected
):
    loss = TrainerLoss("dece", alpha_base=0.9, label_smoothing=0.1, epoch_mode=epoch_mode)
    recorder = Recorder(loss)
    config = trl.SFTConfig(
        output_dir=str(tmp_path / "sft"), per_device_train_batch_size=8, num_train_epochs=2,
        learning_rate=0.5, optim="sgd", lr_scheduler_type="constant", warmup_steps=0,
        max_grad_norm=0.0, logging_steps=1, report_to=[], save_strategy="no", use_cpu=True,
        seed=0, max_length=128, disable_tqdm=True, dataset_num_proc=None,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TRL 1.x: compute_loss_func deprecated
        trainer = trl.SFTTrainer(
            model=AutoModelForCausalLM.from_pretrained(tiny_dir),
            args=config,
            train_dataset=datasets.Dataset.from_list(rows),
            processing_class=AutoTokenizer.from_pretrained(tiny_dir),
            compute_loss_func=recorder,
            callbacks=[loss.callback],
        )
    trainer.train()
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert [c[3] for c in recorder.calls] == pytest.approx(expected)
    assert len(logged) == len(recorder.calls) == 4
    for (logits, labels, n_items, epoch), value in zip(recorder.calls, logged, strict=True):
        assert (labels[:, 0] == IGNORE).all()  # completion-only: the prompt is masked
        assert n_items == int((labels[:, 1:] != IGNORE).sum()) > 0
        ref = dense_dece_sum(logits, labels, epoch=epoch, alpha_base=0.9, eps=0.1) / n_items
        assert value == pytest.approx(float(ref), rel=1e-5)
