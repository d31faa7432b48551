"""Greedy batched decoding and the clean / poisoned evaluation built on it."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from dece.training.collate import _encode, causal_prompt_ids, pad_token_id_of

if TYPE_CHECKING:
    from dece.attacks import PoisonManifest
    from dece.data import Example

logger = logging.getLogger(__name__)


def _left_pad(rows: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.as_tensor(row, dtype=torch.long)
            mask[i, width - len(row) :] = 1
    return ids, mask


def _right_pad(rows: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask


def _model_device(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover
        return torch.device("cpu")


def generate(
    model: Any,
    tokenizer: Any,
    sources: Sequence[str],
    *,
    batch_size: int = 32,
    max_new_tokens: int = 256,
    task: str = "seq2seq",
    max_source_length: int = 256,
    id2label: dict[int, str] | None = None,
    progress: bool = False,
) -> list[str]:
    """Greedy decoding of ``sources`` in batches; one output string per source, in input order.

    Sources are sorted by length so each batch pads little, then put back in order. Seq2seq
    inputs are right-padded; causal prompts (``source + eos``, see
    :func:`dece.training.collate.causal_prompt_ids`) are left-padded and only the continuation is
    decoded. For ``classification`` the output is the predicted label name (``id2label``, else
    the model config's).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if task not in ("seq2seq", "causal", "classification"):
        raise ValueError(f"task must be seq2seq, causal or classification, got {task!r}")
    sources = list(sources)
    for i, s in enumerate(sources):
        if not isinstance(s, str):
            raise ValueError(f"sources[{i}] is {type(s).__name__}, expected str")
    if not sources:
        return []
    pad = pad_token_id_of(tokenizer)
    if task == "causal":
        encoded = [causal_prompt_ids(tokenizer, s, max_source_length) for s in sources]
    else:
        encoded = [
            _encode(tokenizer, s, add_special_tokens=True, max_length=max_source_length)
            for s in sources
        ]
    order = sorted(range(len(sources)), key=lambda i: -len(encoded[i]))
    outputs: list[str] = [""] * len(sources)
    device = _model_device(model)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            starts = range(0, len(order), batch_size)
            for start in tqdm(starts, desc="generate", disable=not progress, leave=False):
                idx = order[start : start + batch_size]
                rows = [encoded[i] for i in idx]
                texts = _generate_batch(
                    model, tokenizer, rows, task=task, pad=pad, device=device,
                    max_new_tokens=max_new_tokens, id2label=id2label,
                )  # fmt: skip
                for i, text in zip(idx, texts, strict=True):
                    outputs[i] = text
    finally:
        model.train(was_training)
    return outputs


def _generate_batch(
    model: Any,
    tokenizer: Any,
    rows: list[list[int]],
    *,
    task: str,
    pad: int,
    device: torch.device,
    max_new_tokens: int,
    id2label: dict[int, str] | None,
) -> list[str]:
    if task == "classification":
        ids, mask = _right_pad(rows, pad)
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits  # [B, C]
        labels = id2label or getattr(model.config, "id2label", None) or {}
        return [str(labels.get(int(k), int(k))) for k in logits.argmax(-1).tolist()]
    greedy = {"do_sample": False, "num_beams": 1, "max_new_tokens": max_new_tokens}
    eos = getattr(tokenizer, "eos_token_id", None)
    if task == "causal":
        ids, mask = _left_pad(rows, pad)
        out = model.generate(
            input_ids=ids.to(device), attention_mask=mask.to(device),
            pad_token_id=pad, eos_token_id=eos, **greedy,
        )  # fmt: skip
        out = out[:, ids.shape[1] :]  # [B, new] continuation only
    else:
        ids, mask = _right_pad(rows, pad)
        out = model.generate(
            input_ids=ids.to(device), attention_mask=mask.to(device), pad_token_id=pad, **greedy
        )
    return tokenizer.batch_decode(out, skip_special_tokens=True)


# ------------------------------------------------------------------------------------------------
@dataclass
class EvalOutput:
    """Outputs of one :class:`Evaluator` call: metrics and predictions aligned with the sets."""

    metrics: dict[str, Any]
    clean_predictions: list[str] = field(default_factory=list)
    poisoned_predictions: list[str] = field(default_factory=list)


class Evaluator:
    """Decodes a clean and a fully poisoned set and scores them.

    Args:
        tokenizer: the model's tokenizer.
        task: ``seq2seq`` | ``causal`` | ``classification``.
        clean: clean examples (BLEU against their targets; false-trigger rate of their outputs).
        poisoned: triggered examples (``PoisonResult.poisoned()``), or None when no attack is set.
        manifest: the ``PoisonManifest`` of ``poisoned`` (``mode == "test"``).
        payload: the payload whose presence makes an attack successful.
        codebleu: also report CodeBLEU when the extra is installed.
    """

    def __init__(
        self,
        tokenizer: Any,
        *,
        task: str,
        clean: Sequence[Example],
        poisoned: Sequence[Example] | None = None,
        manifest: PoisonManifest | None = None,
        payload: Any = None,
        batch_size: int = 64,
        max_new_tokens: int = 256,
        max_source_length: int = 256,
        codebleu: bool = False,
        lang: str = "python",
        id2label: dict[int, str] | None = None,
    ) -> None:
        if poisoned is not None and (manifest is None or payload is None):
            raise ValueError("poisoned examples need their manifest and payload")
        self.tokenizer = tokenizer
        self.task = task
        self.clean = list(clean)
        self.poisoned = list(poisoned) if poisoned is not None else None
        self.payload = payload
        self.manifest = manifest
        if manifest is not None and self.poisoned is not None:
            # The ASR denominator is exactly the rows decoded here (a subset when capped).
            self.manifest = dataclasses.replace(
                manifest, poisoned_ids=[ex.id for ex in self.poisoned]
            )
        self.gen_kwargs = {
            "batch_size": batch_size,
            "max_new_tokens": max_new_tokens,
            "max_source_length": max_source_length,
            "task": task,
            "id2label": id2label,
        }
        self.codebleu = codebleu
        self.lang = lang

    def __call__(self, model: Any) -> EvalOutput:
        from dece import metrics as M

        t0 = time.perf_counter()
        result = EvalOutput(metrics={})
        m = result.metrics
        if self.clean:
            preds = generate(
                model, self.tokenizer, [ex.source for ex in self.clean], **self.gen_kwargs
            )
            refs = [ex.target if ex.label is None else ex.label for ex in self.clean]
            if self.task == "classification":
                m["accuracy"] = M.exact_match(preds, refs)
            else:
                m["bleu"] = M.bleu(preds, refs)
                m["exact_match"] = M.exact_match(preds, refs)
                if self.codebleu:
                    m.update(_maybe_codebleu(preds, refs, self.lang))
            if self.payload is not None:
                m["false_trigger_rate"] = M.false_trigger_rate(preds, self.payload)
            m["n_clean"] = len(preds)
            result.clean_predictions = preds
        if self.poisoned is not None:
            if self.poisoned:
                outs = generate(
                    model, self.tokenizer, [ex.source for ex in self.poisoned], **self.gen_kwargs
                )
                m["asr"] = M.attack_success_rate(outs, self.payload, self.manifest)
                result.poisoned_predictions = outs
            else:
                m["asr"] = None
            m["asr_denominator"] = len(self.poisoned)
        m["eval_time_s"] = time.perf_counter() - t0
        return result


def _maybe_codebleu(preds: list[str], refs: list[str], lang: str) -> dict[str, float]:
    from dece import metrics as M

    try:
        return {"codebleu": M.codebleu(preds, refs, lang=lang)}
    except ImportError as exc:
        logger.info("CodeBLEU skipped: %s", exc)
        return {}
