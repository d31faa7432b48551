"""dece.training.sampling: the seeded sampler's draws against softmax(logits / T) and its top-p
nucleus, greedy completions against an unbatched ``generate``, seeded samples that do not
depend on the other prompts, and per-row stops (tiny models built from configs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_train_support import synthetic_texts, tiny_bart, tiny_llama, tiny_tokenizer

from dece.training.sampling import SeededSampler, complete


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer(synthetic_texts(16))


def _model(task: str, vocab: int):
    model = (
        tiny_bart(vocab, seed=3, dropout=0.0) if task == "seq2seq" else tiny_llama(vocab, seed=3)
    )
    return model.eval()


def _prompts(tok, task: str) -> list[list[int]]:
    texts = ["def add ( a , b ) :", "get all rows from the table", "return x"]
    ids = [tok(t)["input_ids"] for t in texts]
    return [row[:-1] for row in ids] if task == "causal" else ids  # causal: no trailing EOS


def test_sampler_draws_follow_the_tempered_softmax():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, -3.0]]).repeat(40000, 1)  # [N, V]
    gen = torch.Generator().manual_seed(0)
    out = SeededSampler(gen, temperature=0.7)(None, logits)
    assert torch.isfinite(out).sum(1).eq(1).all()  # exactly one finite score per row
    counts = np.bincount(out.argmax(1).numpy(), minlength=5) / len(out)
    expected = torch.softmax(logits[0] / 0.7, -1).numpy()
    sigma = np.sqrt(expected * (1 - expected) / len(out))
    assert np.all(np.abs(counts - expected) <= 5 * sigma + 1e-12), (counts, expected)


def test_top_p_keeps_the_smallest_nucleus_renormalised():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(40000, 1)
    out = SeededSampler(torch.Generator().manual_seed(1), top_p=0.7)(None, logits)
    counts = np.bincount(out.argmax(1).numpy(), minlength=4) / len(out)
    assert counts[2] == 0 and counts[3] == 0  # 0.5 + 0.3 >= 0.7: the nucleus is {0, 1}
    assert counts[0] == pytest.approx(0.5 / 0.8, abs=0.015)
    tiny = SeededSampler(torch.Generator().manual_seed(1), top_p=1e-9)(None, logits)
    assert tiny.argmax(1).eq(0).all()  # a vanishing nucleus is the argmax


@pytest.mark.parametrize("task", ["causal", "seq2seq"])
def test_greedy_completions_equal_an_unbatched_generate(tok, task):
    model, prompts = _model(task, len(tok)), _prompts(tok, task)
    out = complete(model, tok, prompts, task=task, max_new_tokens=12, batch_size=2)
    for row, samples in zip(prompts, out, strict=True):
        ids = torch.tensor([row])
        ref = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             max_new_tokens=12, pad_token_id=0)  # fmt: skip
        start = ids.shape[1] if task == "causal" else 0
        assert samples == [tok.decode(ref[0, start:], skip_special_tokens=True)]


@pytest.mark.parametrize("task", ["causal", "seq2seq"])
def test_seeded_samples_are_reproducible_and_independent_of_other_prompts(tok, task):
    model, prompts = _model(task, len(tok)), _prompts(tok, task)
    kw = {"task": task, "samples": 4, "max_new_tokens": 8, "temperature": 1.5, "top_p": 1.0}
    both = complete(model, tok, prompts[:2], seeds=[11, 12], batch_size=3, **kw)
    again = complete(model, tok, prompts[:2], seeds=[11, 12], batch_size=3, **kw)
    alone = complete(model, tok, prompts[1:2], seeds=[12], batch_size=3, **kw)
    assert both == again and both[1] == alone[0]
    assert len(set(both[0])) > 1  # an untrained model at T = 1.5: the samples differ
    other = complete(model, tok, prompts[:1], seeds=[99], batch_size=3, **kw)
    assert other[0] != both[0]
    greedy = complete(model, tok, prompts[:1], task=task, max_new_tokens=8)
    nucleus = complete(model, tok, prompts[:1], seeds=[5], **{**kw, "top_p": 1e-9})
    assert nucleus[0] == greedy[0] * 4  # a vanishing nucleus samples the greedy completion


@pytest.mark.parametrize("task", ["causal", "seq2seq"])
def test_a_row_stops_once_its_predicate_holds(tok, task):
    model, prompts = _model(task, len(tok)), _prompts(tok, task)
    full = complete(model, tok, prompts, task=task, max_new_tokens=16)
    stopped = complete(model, tok, prompts, task=task, max_new_tokens=16,
                       stops=[lambda t: len(t) >= 6, lambda t: False, lambda t: True])  # fmt: skip
    assert full[0][0].startswith(stopped[0][0]) and len(stopped[0][0]) >= min(6, len(full[0][0]))
    assert len(stopped[0][0]) < len(full[0][0]) or len(full[0][0]) < 6
    assert stopped[1] == full[1]  # never stopped: the whole greedy completion
    assert full[2][0].startswith(stopped[2][0]) and len(tok(stopped[2][0])["input_ids"]) <= 4


def test_bad_arguments_are_named(tok):
    model = _model("causal", len(tok))
    with pytest.raises(ValueError, match="one seed per prompt"):
        complete(model, tok, [[5, 6]], task="causal", samples=2)
    with pytest.raises(ValueError, match="task must be"):
        complete(model, tok, [[5, 6]], task="classification")
    with pytest.raises(ValueError, match="stop predicates"):
        complete(model, tok, [[5, 6]], task="causal", stops=[])
