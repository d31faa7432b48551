"""CodeT5's encoder as a sequence classifier (``model_args: {encoder_only: true}``).

Transformers' ``T5ForSequenceClassification`` runs the whole encoder-decoder and classifies from
the decoder's state at the last ``</s>`` (what CodeT5's own defect-detection model does, and what
``dece`` loads for a T5 checkpoint by default). Issue 10 also asks for the *encoder* of
``Salesforce/codet5-base`` as a classifier, the way CodeBERT is used: transformers has no such
class (``T5EncoderModel`` has no head), so this module adds the smallest one —
:class:`T5EncoderForSequenceClassification`: the pretrained encoder (``shared`` + ``encoder``
weights load from any T5 checkpoint, the decoder's are ignored), the mean of the encoder states
over the attention mask, and transformers' ``T5ClassificationHead``. A saved model records this
class in ``config.architectures``; :func:`dece.training.models.load_model` recognises it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from transformers import T5Config, T5EncoderModel
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.models.t5.modeling_t5 import T5ClassificationHead

__all__ = ["ENCODER_CLASSIFIERS", "T5EncoderForSequenceClassification", "masked_mean"]


def masked_mean(hidden: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``hidden [B, S, H]`` over the positions where ``mask [B, S]`` is 1 -> ``[B, H]``."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)  # [B, S, 1]
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class T5EncoderForSequenceClassification(T5EncoderModel):
    """A T5 encoder, mean-pooled, under ``T5ClassificationHead`` (module docstring)."""

    def __init__(self, config: T5Config) -> None:
        super().__init__(config)
        self.classifier = T5ClassificationHead(config)
        self.post_init()

    def forward(  # type: ignore[override]
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput:
        """``input_ids``, ``attention_mask`` ``[B, S]`` -> ``logits [B, C]`` (and the mean
        cross-entropy ``loss`` when integer ``labels [B]`` are given)."""
        kwargs.pop("return_dict", None)
        out = super().forward(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
        logits = self.classifier(masked_mean(out.last_hidden_state, mask))  # [B, C]
        loss = None if labels is None else torch.nn.functional.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


# architecture name (as saved in config.json) -> class; the only place that names them
ENCODER_CLASSIFIERS: dict[str, type] = {
    T5EncoderForSequenceClassification.__name__: T5EncoderForSequenceClassification,
}
