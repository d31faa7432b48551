"""A tiny causal LM + tokenizer saved locally (built from a config, never downloaded) and
prompt/completion rows from the synthetic dataset."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # ddp_worker.py's helpers, shared with it

from tiny_setup import prompt_completion_rows, save_tiny_causal  # noqa: E402


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def rows() -> list[dict[str, str]]:
    return prompt_completion_rows(16)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, rows) -> Path:
    return save_tiny_causal(tmp_path_factory.mktemp("tiny-causal"), rows)
