"""`dece train` under `torchrun --nproc_per_node 2` (gloo, CPU) == one process, same global batch;
and under `accelerate launch` (on CPU accelerate launches one process: multi-process CPU runs need
MPI, and GPUs use `--multi_gpu`, which is torchrun underneath)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_train_support import synthetic_texts, tiny_bart, tiny_tokenizer

pytestmark = pytest.mark.distributed


@pytest.mark.timeout(300)
def test_two_processes_reach_the_same_weights_as_one(tmp_path, torchrun, launch):
    model_dir = tmp_path / "model"
    tok = tiny_tokenizer(synthetic_texts(16))
    tiny_bart(len(tok), dropout=0.0).save_pretrained(model_dir)  # no dropout: RNG-free steps
    # SGD (not Adam, which is invariant to a gradient scale) exposes a wrong loss normalisation.
    tok.save_pretrained(model_dir)
    common = [
        f"model={model_dir}", "data=synthetic:32", "loss=dece", "num_epochs=1", "max_steps=3",
        "learning_rate=1.0", "optimizer=sgd", "max_grad_norm=0", "warmup_ratio=0.0", "max_source_length=48", "max_target_length=48",
        "eval_each_epoch=false", "save_checkpoints=false", "test_max_examples=2",
        "generation_max_new_tokens=4", "codebleu=false", "use_cpu=true", "ddp_backend=gloo",
        "poison={rate: 0.1, seed: 1}",
    ]  # fmt: skip
    launch([sys.executable, "-m", "dece.cli", "train", f"output_dir={tmp_path / 'one'}",
            "batch_size=8", *common], tmp_path)  # fmt: skip
    launch([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "dece.cli", "train",
            f"output_dir={tmp_path / 'two'}", "batch_size=4", *common], tmp_path)  # fmt: skip
    one = load_file(str(tmp_path / "one" / "model" / "model.safetensors"))
    two = load_file(str(tmp_path / "two" / "model" / "model.safetensors"))
    initial = dict(tiny_bart(len(tok), dropout=0.0).state_dict())
    assert one.keys() == two.keys()
    moved = 0
    for k in one:
        torch.testing.assert_close(one[k], two[k], rtol=1e-4, atol=1e-5, msg=k)
        moved += k in initial and not torch.equal(one[k], initial[k])
    assert moved > 0  # training really happened

    accelerate = Path(sys.executable).parent / "accelerate"
    if not accelerate.exists():
        pytest.skip("accelerate's launcher not installed")
    launch([str(accelerate), "launch", "--cpu", "--num_processes", "1", "-m", "dece.cli", "train",
            f"output_dir={tmp_path / 'acc'}", "batch_size=8", *common], tmp_path)  # fmt: skip
    acc = load_file(str(tmp_path / "acc" / "model" / "model.safetensors"))
    for k in one:
        torch.testing.assert_close(one[k], acc[k], rtol=1e-4, atol=1e-5, msg=k)
