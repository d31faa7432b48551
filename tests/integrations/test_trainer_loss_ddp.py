"""TrainerLoss under DDP: ``torchrun --nproc_per_node 2`` (gloo, CPU) with batch 2 x 2
accumulation steps per process reaches the weights of one process with batch 8 (same global
batch; SGD, so a wrong loss normalisation shows), and both processes see epochs 1, 1, 2, 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.distributed

WORKER = Path(__file__).with_name("ddp_worker.py")


@pytest.mark.timeout(300)
def test_two_processes_with_accumulation_equal_one_process(tiny_dir, tmp_path, torchrun, launch):
    one, two = tmp_path / "one", tmp_path / "two"
    on_path = (WORKER.parent,)
    launch([sys.executable, str(WORKER), str(tiny_dir), str(one), "8", "1"], tmp_path,
           pythonpath=on_path)  # fmt: skip
    launch([torchrun, "--standalone", "--nproc_per_node", "2", str(WORKER), str(tiny_dir),
            str(two), "2", "2"], tmp_path, pythonpath=on_path)  # fmt: skip
    w_one = load_file(str(one / "model" / "model.safetensors"))
    w_two = load_file(str(two / "model" / "model.safetensors"))
    start = load_file(str(tiny_dir / "model.safetensors"))
    assert w_one.keys() == w_two.keys()
    moved = 0
    for k in w_one:
        torch.testing.assert_close(w_two[k], w_one[k], rtol=1e-4, atol=1e-6, msg=k)
        moved += not torch.equal(w_one[k], start[k])
    assert moved > 0
    assert json.loads((one / "epochs-0.json").read_text()) == [1.0, 1.0, 2.0, 2.0]
    for rank in (0, 1):  # 2 micro-batches per step on each process
        epochs = json.loads((two / f"epochs-{rank}.json").read_text())
        assert epochs == [1.0] * 4 + [2.0] * 4
