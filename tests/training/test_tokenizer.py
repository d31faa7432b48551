"""Byte-level BPE tokenizer: lossless round trip (tabs, newlines, unicode), specials, save/load."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from dece.training.tokenizer import SPECIAL_TOKENS, decode_exact, train_bpe_tokenizer

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("DECE_SHARED_DATA") or REPO / ".." / "shared" / "data")
LYRA_TRAIN = SHARED / "lyra" / "train.csv"


@pytest.fixture(scope="module")
def lyra_texts() -> list[str]:
    if not LYRA_TRAIN.is_file():
        pytest.skip(f"Lyra data not found at {LYRA_TRAIN} (set DECE_SHARED_DATA)")
    with LYRA_TRAIN.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["src"] for r in rows] + [r["tgt"] for r in rows]


def test_round_trip_on_lyra_rows_with_tabs_and_newlines(lyra_texts):
    tok = train_bpe_tokenizer(lyra_texts[:400] + lyra_texts[-400:], vocab_size=1024)
    whitespace_rows = [t for t in lyra_texts if "\t" in t and "\n" in t]
    assert len(whitespace_rows) > 100  # the oracle exercises what it claims to
    for text in whitespace_rows[:500] + lyra_texts[:200]:
        ids = tok(text)["input_ids"]
        assert tok.unk_token_id not in ids
        assert decode_exact(tok, ids) == text


def test_full_vocab_on_lyra_compresses(lyra_texts):
    tok = train_bpe_tokenizer(lyra_texts, vocab_size=4096)
    assert len(tok) == 4096
    n_tokens = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in lyra_texts[:300])
    n_bytes = sum(len(t.encode()) for t in lyra_texts[:300])
    assert n_tokens < n_bytes / 3  # BPE merges: far fewer tokens than bytes


@pytest.mark.parametrize(
    "text",
    ["", " leading and trailing  ", "\t\tdef f ( ) :\r\n\treturn 'é' # ünïcödé ✓ 😀", "a\n\n\nb"],
)
def test_unseen_text_round_trips_without_unk(text):
    tok = train_bpe_tokenizer(["def f ( x ) :\n\treturn x"] * 3, vocab_size=300)
    ids = tok(text)["input_ids"]
    assert tok.unk_token_id not in ids
    assert decode_exact(tok, ids) == text


def test_special_tokens_and_templates():
    texts = ["select * from users", "print ( x )"]
    s2s = train_bpe_tokenizer(texts, vocab_size=300, add_eos=True)
    causal = train_bpe_tokenizer(texts, vocab_size=300, add_eos=False)
    for tok in (s2s, causal):
        assert [tok.pad_token, tok.bos_token, tok.eos_token, tok.unk_token, tok.mask_token] == list(
            SPECIAL_TOKENS
        )
        assert [tok.pad_token_id, tok.bos_token_id, tok.eos_token_id] == [0, 1, 2]
        assert tok.unk_token_id == 3 and tok.mask_token_id == 4
    body = s2s(texts[0], add_special_tokens=False)["input_ids"]
    assert s2s(texts[0])["input_ids"] == [1, *body, 2]
    assert causal(texts[0])["input_ids"] == [1, *body]
    padded = s2s(texts, padding=True)["input_ids"]
    assert padded[1][-1] == 0  # right padding with <pad>


def test_save_and_reload_gives_same_ids(tmp_path):
    texts = ["def main ( conn ) :\n\tconn . execute ( q )", "Use $conn$ to run the query"]
    tok = train_bpe_tokenizer(texts * 5, vocab_size=320)
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    for text in [*texts, "\tunseen\nline"]:
        assert again(text)["input_ids"] == tok(text)["input_ids"]
    assert again.mask_token_id == tok.mask_token_id == 4


def test_bad_input_raises():
    with pytest.raises(ValueError, match="vocab_size"):
        train_bpe_tokenizer(["x"], vocab_size=100)
    with pytest.raises(ValueError, match=r"texts\[1\]"):
        train_bpe_tokenizer(["x", 3], vocab_size=300)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="empty"):
        train_bpe_tokenizer([], vocab_size=300)
