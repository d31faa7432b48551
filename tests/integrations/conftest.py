"""A tiny causal LM + tokenizer saved locally (built from a config, never downloaded) and
prompt/completion rows from the synthetic dataset (``one_thread`` comes from tests/conftest.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # ddp_worker.py's helpers, shared with it

from tiny_setup import prompt_completion_rows, save_tiny_causal  # noqa: E402


@pytest.fixture(scope="session")
def rows() -> list[dict[str, str]]:
    return prompt_completion_rows(16)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, rows) -> Path:
    return save_tiny_causal(tmp_path_factory.mktemp("tiny-causal"), rows)
