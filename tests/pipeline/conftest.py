"""Fixtures for the pipeline tests: tiny models built from configs, a tokenizer trained in the
test (never downloaded). Helpers come from ``tests/training/test_train_support.py``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from test_train_support import (  # noqa: E402
    save_tiny_seq2seq,
    synthetic_texts,
    tiny_tokenizer,
)


@pytest.fixture(scope="session")
def tok():
    return tiny_tokenizer(synthetic_texts(16))


@pytest.fixture(scope="module")
def bart_dir(tmp_path_factory) -> Path:
    return save_tiny_seq2seq(tmp_path_factory.mktemp("tiny_bart"))
