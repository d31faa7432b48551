"""fused_causal_lm_loss: SGD steps through the fused path reach the same weights as the unfused
path (``model(...).logits`` then ``dece_loss`` / ``ce_loss``), and no logits are formed."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from dece.losses import ce_loss, dece_loss
from dece.training.collate import shift_left
from dece.training.fused import fused_causal_lm_loss, fused_loss_settings
from dece.training.tiny import TinyCausalConfig

pytestmark = pytest.mark.usefixtures("one_thread")

IGNORE = -100


def tiny_config(**overrides) -> LlamaConfig:
    """The tiny-causal preset's architecture (d_model 256, 6 layers, 4 heads, vocab 4096)."""
    cfg = TinyCausalConfig().model_config()
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


def smollm2_sized_config(num_layers: int = 2) -> LlamaConfig:
    """SmolLM2-135M's dimensions (hidden 576, FFN 1536, 9 heads / 3 KV heads, vocab 49,152,
    tied embeddings) with 2 of its 30 layers, to keep the test fast: the head and the loss,
    which the fused path changes, are full size."""
    return LlamaConfig(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=num_layers,
        num_attention_heads=9,
        num_key_value_heads=3,
        max_position_embeddings=2048,
        rope_theta=100000.0,
        tie_word_embeddings=True,
        pad_token_id=2,
        bos_token_id=1,
        eos_token_id=2,
    )


def build(config: LlamaConfig, *, seed: int = 0, head_bias: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    if head_bias:  # a head with a bias (untied): a plain nn.Linear the Llama forward calls
        head = nn.Linear(config.hidden_size, config.vocab_size, bias=True)
        head.weight.data.copy_(model.lm_head.weight.data)
        nn.init.normal_(head.bias, std=0.5)
        model.lm_head = head
    return model


def make_batch(vocab: int, *, b: int = 3, t: int = 17, seed: int = 0):
    """Right-padded causal batch: prompts masked to -100, padding ignored (collate.py layout)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (b, t), generator=g)
    mask = torch.ones(b, t, dtype=torch.long)
    labels = ids.clone()
    for i in range(b):
        length = t - 3 * i  # rows 1.. are padded
        mask[i, length:] = 0
        ids[i, length:] = 0
        labels[i, length:] = IGNORE
        labels[i, : 2 + i] = IGNORE  # the prompt
    return ids, mask, shift_left(labels)


def unfused_loss(model, ids, mask, target, *, loss, epoch, num_items, **hp):
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits  # [B, T, V]
    if loss == "ce":
        return ce_loss(logits, target, num_items_in_batch=num_items, **hp)
    return dece_loss(logits, target, epoch=epoch, num_items_in_batch=num_items, **hp)


def fused_loss(model, ids, mask, target, *, loss, epoch, num_items, **hp):
    out = fused_causal_lm_loss(
        model, ids, mask, target, loss=loss, epoch=epoch, num_items_in_batch=num_items, **hp
    )
    return out.loss


def sgd_steps(model, loss_fn, batches, *, lr, loss, hp, epochs=(1.0, 1.5, 2.0)):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr)
    losses = []
    for (ids, mask, target), epoch in zip(batches, epochs, strict=True):
        opt.zero_grad()
        num_items = int((target != IGNORE).sum())  # the Trainer's num_items_in_batch
        value = loss_fn(model, ids, mask, target, loss=loss, epoch=epoch, num_items=num_items, **hp)
        value.backward()
        opt.step()
        losses.append(value.item())
    return losses


def assert_same_training(make_model, batches, *, lr, loss="dece", **hp):
    """Weights after SGD through both paths agree to rtol 1e-5; so do the weight *updates*
    (relative to their size), which is what a missing or wrong gradient would change."""
    reference = make_model()
    start = {n: p.detach().clone() for n, p in reference.named_parameters()}
    fused = copy.deepcopy(reference)
    l_ref = sgd_steps(reference, unfused_loss, batches, lr=lr, loss=loss, hp=hp)
    l_fused = sgd_steps(fused, fused_loss, batches, lr=lr, loss=loss, hp=hp)
    torch.testing.assert_close(torch.tensor(l_fused), torch.tensor(l_ref), rtol=1e-5, atol=0)
    moved = 0
    for (name, p_ref), p_fused in zip(
        reference.named_parameters(), fused.parameters(), strict=True
    ):
        torch.testing.assert_close(p_fused, p_ref, rtol=1e-5, atol=1e-7, msg=name)
        step_ref, step_fused = p_ref.detach() - start[name], p_fused.detach() - start[name]
        scale = step_ref.abs().max()
        if p_ref.requires_grad:
            assert scale > 0, f"{name} did not move"
            moved += 1
            assert (step_fused - step_ref).abs().max() <= 1e-3 * scale, name
    assert moved > 0


def batches_for(vocab, n=3, **kw):
    return [make_batch(vocab, seed=i, **kw) for i in range(n)]


def test_tiny_causal_architecture_tied_dece():
    cfg = tiny_config(vocab_size=4096)
    assert cfg.tie_word_embeddings
    assert_same_training(lambda: build(cfg), batches_for(4096), lr=0.5)


def test_tiny_causal_architecture_untied_with_bias_ce_smoothing():
    cfg = tiny_config(vocab_size=1000, num_hidden_layers=2, tie_word_embeddings=False)
    assert_same_training(
        lambda: build(cfg, head_bias=True),
        batches_for(1000),
        lr=0.5,
        loss="ce",
        label_smoothing=0.1,
    )


def test_smollm2_sized_config_tied_dece():
    cfg = smollm2_sized_config(num_layers=2)
    assert_same_training(
        lambda: build(cfg),
        batches_for(49152, b=2, t=12),
        lr=1.0,
        alpha_base=0.9,
        label_smoothing=0.1,
    )


def test_lora_wrapped_model_trains_the_same():
    peft = pytest.importorskip("peft")
    cfg = tiny_config(vocab_size=1000, num_hidden_layers=2)

    def make():
        lora = peft.LoraConfig(
            r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]
        )
        model = peft.get_peft_model(build(cfg), lora)
        for name, p in model.named_parameters():  # B starts at 0: start it elsewhere
            if "lora_B" in name:
                nn.init.normal_(p, std=0.02)
        return model

    assert_same_training(make, batches_for(1000), lr=0.5)


def test_token_ce_and_no_logits_from_the_model():
    cfg = tiny_config(vocab_size=500, num_hidden_layers=1)
    model = build(cfg)
    ids, mask, target = make_batch(500)
    shapes = []
    handle = model.lm_head.register_forward_hook(lambda m, a, out: shapes.append(tuple(out.shape)))
    out = fused_causal_lm_loss(model, ids, mask, target, epoch=2.0, return_token_ce=True)
    handle.remove()
    assert shapes == [(3, 0, 500)]  # the head ran on an empty slice: no logits
    logits = model(input_ids=ids, attention_mask=mask).logits
    expected = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="none")
    assert out.token_ce.shape == target.shape and not out.token_ce.requires_grad
    torch.testing.assert_close(out.token_ce, expected.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.loss, dece_loss(logits, target, epoch=2.0), rtol=1e-5, atol=0)
    assert not model.lm_head._forward_pre_hooks  # the hook is gone after the call


def test_settings_and_refusals():
    assert fused_loss_settings("ce") == {"alpha_base": 1.0, "label_smoothing": 0.0}
    assert fused_loss_settings("dece", alpha_base=0.9) == {
        "alpha_base": 0.9,
        "label_smoothing": 0.1,
    }
    with pytest.raises(ValueError, match="loss must be one of"):
        fused_loss_settings("gce")
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        fused_loss_settings("ce", alpha_base=0.9)
    cfg = tiny_config(vocab_size=100, num_hidden_layers=1)
    model = build(cfg)
    ids, mask, target = make_batch(100)
    with pytest.raises(ValueError, match="shift_labels shape"):
        fused_causal_lm_loss(model, ids, mask, target[:, :-1], epoch=1.0)
    model.config.final_logit_softcapping = 30.0
    with pytest.raises(ValueError, match="final_logit_softcapping"):
        fused_causal_lm_loss(model, ids, mask, target, epoch=1.0)
    peft = pytest.importorskip("peft")
    plain = build(tiny_config(vocab_size=100, num_hidden_layers=1))
    lora_head = peft.get_peft_model(plain, peft.LoraConfig(r=2, target_modules=["lm_head"]))
    with pytest.raises(ValueError, match="nn.Linear"):
        fused_causal_lm_loss(lora_head, ids, mask, target, epoch=1.0)


WORKER = Path(__file__).with_name("fused_ddp_worker.py")


@pytest.mark.distributed
@pytest.mark.timeout(300)
def test_ddp_wrapped_model_two_processes_equal_one(tmp_path, torchrun, launch):
    """The hook sits on the inner model's head while DDP's own forward runs: 2 gloo processes
    with half the batch each reach the weights of 1 process with the whole batch."""
    for n, out in ((1, "one.pt"), (2, "two.pt")):
        cmd = [torchrun, "--standalone", "--nproc_per_node", str(n), str(WORKER)]
        launch([*cmd, str(tmp_path / out)], tmp_path, pythonpath=(WORKER.parent,), limit_s=150)
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    start = build(tiny_config(vocab_size=300, num_hidden_layers=1)).state_dict()
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=1e-5, atol=1e-6, msg=k)
    assert any(not torch.equal(one[k], start[k]) for k in one)
