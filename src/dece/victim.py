"""``Victim``: one batched interface to a trained model that every defense can use.

A defense never needs to know the architecture: it hands :class:`~dece.data.Example` rows (text
pairs included) to

- :meth:`Victim.predict` -> the greedy output text (generation) or the predicted dataset label
  (classification), one per example;
- :meth:`Victim.confidence` -> ``[N]`` the model's confidence in a *given* output: the probability
  of the given label (classification), or the mean per-token probability of the given output
  sequence, teacher-forced (generation; CodePurify's Eq. 1);
- :meth:`Victim.predict_with_confidence` -> the prediction and the confidence in it (a
  classifier's from one forward per row);
- :meth:`Victim.example_loss` -> ``[N]`` the mean per-token cross-entropy of each example's
  reference (its target, or its label for classification);
- :meth:`Victim.embed` -> ``[N, H]`` one representation per input (the input of Spectral
  Signature, Activation Clustering, BKI and the PCA plot):

  * encoder-decoder models: mean over the non-padding input tokens of the encoder's last hidden
    state;
  * decoder-only models: mean over the input (prompt) tokens of the last hidden state;
  * classifiers: the pooled representation the classification head reads (BERT's pooler output,
    BART's end-of-sequence state, a decoder's last non-padding token; the first token when the
    head reads the whole sequence, as RoBERTa's does).

Every call counts toward :attr:`Victim.stats` (calls, rows and seconds per method), so a defense's
cost can be measured in model calls as well as seconds. Load one with :meth:`Victim.load` from a
``dece`` run directory (``output_dir`` of :func:`dece.pipeline.train`, or its ``model/``) or from
any Hugging Face checkpoint directory, id or ``dece`` preset; a victim loaded from a run
directory remembers it (:attr:`Victim.run_dir`), so a defense can read what training recorded
there (the per-example losses of ``example_losses.jsonl``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dece.data import Example, check_examples
from dece.rundir import MODEL_DIR, RunDir
from dece.training.collate import (
    IGNORE_INDEX,
    Collator,
    causal_prompt_ids,
    decoder_start_token_id_of,
    encode_example,
    encode_source,
    pad_token_id_of,
)
from dece.training.generation import _model_device, decode_rows, length_batches

__all__ = ["BATCHING_REVISION", "Victim", "VictimStats"]

logger = logging.getLogger(__name__)

#: How :meth:`Victim.predict` groups rows into batches; padding can shift a greedy output, so
#: every evaluated cell records it (``predict_revision``) and tables never mix revisions.
#: 1: sorted by length, ``batch_size`` rows; 2 (issue 27): a token budget (``batch_tokens``).
BATCHING_REVISION = 2


@dataclass
class VictimStats:
    """How often each method ran: ``calls[method]``, ``rows[method]``, ``seconds[method]``."""

    calls: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, method: str, rows: int, seconds: float) -> None:
        self.calls[method] = self.calls.get(method, 0) + 1
        self.rows[method] = self.rows.get(method, 0) + rows
        self.seconds[method] = self.seconds.get(method, 0.0) + seconds

    def total_seconds(self) -> float:
        return float(sum(self.seconds.values()))


class Victim:
    """A trained model, its tokenizer and its task behind one batched interface.

    Args:
        model: a ``transformers`` model (or a PEFT-wrapped one).
        tokenizer: its tokenizer.
        task: ``"seq2seq"``, ``"causal"`` or ``"classification"``.
        labels: classification only: the dataset's label names in class-index order (default: the
            model config's ``id2label``).
        max_source_length, max_target_length: truncation of inputs / outputs (tokens).
        max_new_tokens: greedy decoding cap (default ``max_target_length``).
        batch_size: rows per forward pass when :attr:`batch_tokens` is None.
    """

    #: padded tokens per forward pass: rows are sorted by length and batched by this budget
    #: (:func:`~dece.training.generation.length_batches`; ``predict`` counts each row's input
    #: plus ``max_new_tokens``); None: fixed ``batch_size`` rows in input order (the path before
    #: issue 27, kept as the reference its outputs are checked against)
    batch_tokens: int | None = 16384

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        task: str,
        *,
        labels: Sequence[str] | None = None,
        max_source_length: int = 256,
        max_target_length: int = 256,
        max_new_tokens: int | None = None,
        batch_size: int = 32,
    ) -> None:
        if task not in ("seq2seq", "causal", "classification"):
            raise ValueError(f"task must be seq2seq, causal or classification, got {task!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.tokenizer = tokenizer
        self.task = task
        self.max_source_length = int(max_source_length)
        self.max_target_length = int(max_target_length)
        self.max_new_tokens = int(max_new_tokens or max_target_length)
        self.batch_size = int(batch_size)
        self.labels: list[str] | None = None
        if task == "classification":
            if labels is None:
                id2label = getattr(model.config, "id2label", None) or {}
                labels = [str(id2label[i]) for i in sorted(id2label)]
            self.labels = [str(x) for x in labels]
        self.stats = VictimStats()
        #: the ``dece`` run directory the model was loaded from (None: built in memory or loaded
        #: from elsewhere); set by :meth:`load`
        self.run_dir: Path | None = None

    # ------------------------------------------------------------------------------ loading
    @classmethod
    def load(cls, spec: str | Path, *, task: str | None = None, **kwargs: Any) -> Victim:
        """A victim from a ``dece`` run directory (its ``config.yaml`` gives the lengths and
        task; the model is ``model/``), a checkpoint directory (full model or PEFT adapter),
        a Hugging Face id or a ``dece`` preset. ``kwargs`` override the constructor's."""
        path = Path(spec)
        settings: dict[str, Any] = {}
        run_dir = None
        if RunDir(path).has_model():
            settings = _run_settings(RunDir(path).config)
            run_dir, path = path, RunDir(path).model
        elif path.name == MODEL_DIR and RunDir(path.parent).config.is_file():
            run_dir = path.parent
        settings.update(kwargs)
        model, tokenizer, loaded_task = _load_checkpoint(
            str(path), task or settings.pop("task", None)
        )
        settings.pop("task", None)
        victim = cls(model, tokenizer, loaded_task, **settings)
        victim.run_dir = run_dir
        return victim

    # ------------------------------------------------------------------------------ encoding
    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.labels or [])}

    def encode_inputs(self, examples: Sequence[Example]) -> list[list[int]]:
        """Input ids of each example (the prompt for causal LMs), unpadded."""
        if self.task == "causal":
            return [
                causal_prompt_ids(self.tokenizer, ex.source, self.max_source_length, ex.source_pair)
                for ex in examples
            ]
        return [
            encode_source(
                self.tokenizer, ex.source, ex.source_pair, max_length=self.max_source_length
            )
            for ex in examples
        ]

    def _collator(self) -> Collator:
        return Collator(
            task=self.task,
            pad_token_id=pad_token_id_of(self.tokenizer),
            decoder_start_token_id=decoder_start_token_id_of(self.model, self.tokenizer)
            if self.task == "seq2seq" else None,
        )  # fmt: skip

    def _timed(self, method: str, rows: int, start: float) -> None:
        self.stats.add(method, rows, time.perf_counter() - start)

    # ------------------------------------------------------------------------------ predict
    def predict(self, examples: Sequence[Example], *, stage: str | None = None) -> list[str]:
        """Greedy output text (generation) or predicted label name (classification) per row.

        ``stage``: progress stage name to report (see :mod:`dece.progress`)."""
        examples = check_examples(examples)
        t0 = time.perf_counter()
        id2label = dict(enumerate(self.labels)) if self.labels is not None else None
        out = decode_rows(
            self.model, self.tokenizer, self.encode_inputs(examples), task=self.task,
            batch_size=self.batch_size, max_new_tokens=self.max_new_tokens, id2label=id2label,
            stage=stage, token_budget=self.batch_tokens,
        )  # fmt: skip
        self._timed("predict", len(examples), t0)
        return out

    def predict_with_confidence(self, examples: Sequence[Example]) -> tuple[list[str], np.ndarray]:
        """:meth:`predict` and ``[N]`` :meth:`confidence` in each prediction. A classifier gives
        both from one forward per row (the label of the largest logit and its probability: the
        input is not run twice); a generation victim decodes, then scores its outputs."""
        examples = check_examples(examples)
        if self.task != "classification":
            predictions = self.predict(examples)
            return predictions, self.confidence(examples, predictions)
        t0 = time.perf_counter()
        labels = list(self.labels or [])
        encoded = self.encode_inputs(examples)
        predictions = [""] * len(examples)
        prob = np.zeros(len(examples))
        pad, device = pad_token_id_of(self.tokenizer), _model_device(self.model)
        with _eval_mode(self.model), torch.inference_mode():
            for idx in self._batches([len(r) for r in encoded]):
                ids, mask = _right_pad([encoded[i] for i in idx], pad)
                logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device))
                logp = torch.log_softmax(logits.logits.float(), dim=-1)  # [B, C]
                top = logp.argmax(-1)  # [B]
                prob[idx] = logp.gather(1, top.unsqueeze(1)).squeeze(1).exp().cpu().numpy()
                for i, k in zip(idx, top.tolist(), strict=True):
                    predictions[i] = labels[k]
        self._timed("predict", len(examples), t0)
        return predictions, prob

    # ------------------------------------------------------------------------------ scores
    def confidence(self, examples: Sequence[Example], outputs: Sequence[str]) -> np.ndarray:
        """``[N]``: probability of the given label (classification) or mean per-token
        probability of the given output sequence, teacher-forced (generation)."""
        examples, outputs = _check_pairs(examples, outputs)
        t0 = time.perf_counter()
        prob, _ = self._score(examples, outputs)
        self._timed("confidence", len(examples), t0)
        return prob

    def example_loss(self, examples: Sequence[Example]) -> np.ndarray:
        """``[N]``: mean per-token cross-entropy of each example's reference (target or label)."""
        examples = check_examples(examples)
        t0 = time.perf_counter()
        _, nll = self._score(examples, [ex.reference for ex in examples])
        self._timed("example_loss", len(examples), t0)
        return nll

    def _score(self, examples: list[Example], outputs: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Mean per-token probability and mean per-token NLL of ``outputs`` given the inputs."""
        prob = np.zeros(len(examples))
        nll = np.zeros(len(examples))
        if self.task == "classification":
            unknown = sorted({o for o in outputs if o not in self.label2id})
            if unknown:
                raise ValueError(
                    f"outputs {unknown[:5]} are not labels of this model {self.labels}"
                )
        collate = self._collator()
        encoded = [
            encode_example(
                self.tokenizer, _with_output(ex, out, self.task), task=self.task,
                max_source_length=self.max_source_length,
                max_target_length=self.max_target_length, label2id=self.label2id,
            )
            for ex, out in zip(examples, outputs, strict=True)
        ]  # fmt: skip
        with _eval_mode(self.model), torch.inference_mode():
            for idx in self._batches([_score_length(row, self.task) for row in encoded]):
                p, n = self._score_batch(collate([encoded[i] for i in idx]))
                prob[idx] = p
                nll[idx] = n
        return prob, nll

    def _batches(self, lengths: Sequence[int]) -> list[list[int]]:
        """Row indices per forward pass: by :attr:`batch_tokens` (length-sorted), else fixed
        ``batch_size`` rows in input order."""
        if self.batch_tokens is None:
            n, size = len(lengths), self.batch_size
            return [list(range(s, min(s + size, n))) for s in range(0, n, size)]
        return length_batches(lengths, token_budget=self.batch_tokens)

    def _score_batch(self, batch: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
        device = _model_device(self.model)
        batch = {k: v.to(device) for k, v in batch.items() if k != "example_index"}
        labels = batch.pop("labels")
        target = batch.pop("shift_labels", labels)  # [B, T] (causal: already shifted) or [B]
        logits = self.model(**batch).logits.float()  # [B, T, V] or [B, C]
        logp = torch.log_softmax(logits, dim=-1)
        if self.task == "classification":
            lp = logp.gather(1, target.unsqueeze(1)).squeeze(1)  # [B]
            return lp.exp().cpu().numpy(), (-lp).cpu().numpy()
        valid = target != IGNORE_INDEX  # [B, T]
        safe = target.masked_fill(~valid, 0)
        lp = logp.gather(2, safe.unsqueeze(2)).squeeze(2).masked_fill(~valid, 0.0)  # [B, T]
        count = valid.sum(1).clamp(min=1)
        mean_p = (lp.exp() * valid).sum(1) / count
        mean_nll = -lp.sum(1) / count
        return mean_p.cpu().numpy(), mean_nll.cpu().numpy()

    # ------------------------------------------------------------------------------ embed
    def embed(self, examples: Sequence[Example]) -> np.ndarray:
        """``[N, H]`` representations (see the module docstring for what each task uses)."""
        examples = check_examples(examples)
        t0 = time.perf_counter()
        pad = pad_token_id_of(self.tokenizer)
        encoded = self.encode_inputs(examples)
        out: np.ndarray | None = None
        device = _model_device(self.model)
        with _eval_mode(self.model), torch.inference_mode():
            for idx in self._batches([len(r) for r in encoded]):
                ids, mask = _right_pad([encoded[i] for i in idx], pad)
                part = self._embed_batch(ids.to(device), mask.to(device)).float().cpu().numpy()
                if out is None:
                    out = np.zeros((len(encoded), part.shape[1]), dtype=part.dtype)
                out[idx] = part  # [B, H] back at the rows' input positions
        self._timed("embed", len(examples), t0)
        return out if out is not None else np.zeros((0, 0))

    def _embed_batch(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        model = _unwrap_peft(self.model)
        if self.task == "classification":
            return _pooled(model, ids, mask)
        if self.task == "seq2seq":
            hidden = model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        else:
            hidden = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)  # [B, S, 1]
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)  # [B, H]


# ---------------------------------------------------------------------------------- helpers
def _check_pairs(
    examples: Sequence[Example], outputs: Sequence[str]
) -> tuple[list[Example], list[str]]:
    examples = check_examples(examples)
    outputs = list(outputs)
    if len(outputs) != len(examples):
        raise ValueError(f"{len(examples)} examples but {len(outputs)} outputs")
    for i, out in enumerate(outputs):
        if not isinstance(out, str):
            raise ValueError(f"outputs[{i}] is a {type(out).__name__}, expected str")
    return examples, outputs


def _score_length(row: dict[str, Any], task: str) -> int:
    """Padded tokens one encoded row adds to a batch (seq2seq: encoder plus decoder side)."""
    extra = len(row["labels"]) if task == "seq2seq" else 0
    return len(row["input_ids"]) + extra


def _with_output(example: Example, output: str, task: str) -> Example:
    """The example with ``output`` as its reference (the label for classification)."""
    from dataclasses import replace

    if task == "classification":
        return replace(example, label=output)
    return replace(example, target=output, label=None)


def _right_pad(rows: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.as_tensor(list(row), dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask


class _eval_mode:
    """``model.eval()`` inside the block, the previous mode restored after."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def __enter__(self) -> None:
        self.was_training = self.model.training
        self.model.eval()

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was_training)


def _unwrap_peft(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


_HEADS = ("classifier", "classification_head", "score")


def _pooled(model: Any, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The representation a sequence classifier's head reads, ``[B, H]``."""
    head = next((getattr(model, n) for n in _HEADS if hasattr(model, n)), None)
    if head is None:
        raise ValueError(f"{type(model).__name__}: no classification head among {_HEADS}")
    seen: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        model(input_ids=ids, attention_mask=mask)
    finally:
        hook.remove()
    features = seen[0]
    if features.dim() == 2:  # already pooled: [B, H]
        return features
    if getattr(model.config, "is_encoder_decoder", False) or not _is_decoder_only(model):
        return features[:, 0]  # the head pools the first token itself (RoBERTa-style)
    last = mask.sum(1) - 1  # right padding: the last real token
    return features[torch.arange(features.shape[0], device=features.device), last]


def _is_decoder_only(model: Any) -> bool:
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    model_type = getattr(model.config, "model_type", "")
    return model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and (
        model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    )


def _run_settings(config_path: Path) -> dict[str, Any]:
    """Victim settings from a run's ``config.yaml`` (a resolved ``TrainConfig``)."""
    import yaml

    data = yaml.safe_load(config_path.read_text()) or {}
    keys = {
        "max_source_length": "max_source_length",
        "max_target_length": "max_target_length",
        "generation_max_new_tokens": "max_new_tokens",
        "eval_batch_size": "batch_size",
        "task": "task",
    }
    return {new: data[old] for old, new in keys.items() if data.get(old) is not None}


def _load_checkpoint(spec: str, task: str | None) -> tuple[Any, Any, str]:
    """``(model, tokenizer, task)`` of a full checkpoint, a PEFT adapter directory, an id or a
    preset."""
    from dece.training.models import load_model

    adapter = Path(spec) / "adapter_config.json"
    if not adapter.is_file():
        loaded = load_model(spec, task=task)
        return loaded.model, loaded.tokenizer, loaded.task
    return _load_adapter(Path(spec), task)


def _load_adapter(path: Path, task: str | None) -> tuple[Any, Any, str]:
    try:
        import peft
    except ImportError as exc:  # pragma: no cover
        raise ImportError(f"{path} is a LoRA adapter: pip install 'dece[lora]'") from exc
    from transformers import AutoTokenizer

    config = json.loads((path / "adapter_config.json").read_text())
    kinds = {
        "SEQ_2_SEQ_LM": ("seq2seq", peft.AutoPeftModelForSeq2SeqLM),
        "CAUSAL_LM": ("causal", peft.AutoPeftModelForCausalLM),
        "SEQ_CLS": ("classification", peft.AutoPeftModelForSequenceClassification),
    }
    if config.get("task_type") not in kinds:
        raise ValueError(f"{path}: adapter task_type {config.get('task_type')!r} is not supported")
    adapter_task, auto = kinds[config["task_type"]]
    if task is not None and task != adapter_task:
        raise ValueError(f"{path}: a {adapter_task} adapter, not {task}")
    model = auto.from_pretrained(str(path))
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, adapter_task
