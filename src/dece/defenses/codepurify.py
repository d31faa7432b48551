"""``codepurify``: CodePurify (Mu et al., "CodePurify: Defend Backdoor Attacks on Neural Code
Models via Entropy-based Purification"), a test-time purifier.

For one input ``x`` with the victim's prediction ``y = f(x)``:

1. **Masked variants** (:mod:`dece.defenses.code_elements`): one per element — every distinct
   identifier (all its occurrences masked), every complete statement (keywords kept, every other
   token masked) and, for natural-language inputs, every distinct word. A masked token becomes as
   many mask tokens as the infilling model's tokenizer needs for it (a masked LM: its sub-tokens;
   a BART-style span infiller such as ``tiny-seq2seq``: one, as in its pretraining).
2. **Suspicion** of element ``i`` (Eq. 1-2): ``s_i = |c(x_i, y) - c(x, y)|`` with ``c`` the
   victim's confidence in ``y`` (:meth:`dece.victim.Victim.confidence`: the label's probability,
   or the mean per-token probability of ``y`` teacher-forced). All variants of a chunk of inputs
   go through the victim in batched forward passes.
3. **Entropy** of the normalised suspicions (:func:`suspicion_entropy`): ``softmax`` (the paper's
   Eq. 3) or ``sum`` (``s_i / sum_j s_j``, the official code). A trigger concentrates the
   suspicion on one element, so a *low* entropy means poisoned: ``detected = H < threshold``. The
   threshold is fixed, or calibrated on clean validation inputs so that a chosen fraction
   (``clean_fraction``) of them would be purified
   (:func:`dece.defenses._support.calibrate_threshold`).
4. **Purification**: the element with the largest suspicion is masked and re-filled by an
   infilling model (:mod:`dece.defenses.infill`: a masked LM such as
   ``microsoft/codebert-base-mlm``, as in the paper, or offline the ``tiny-seq2seq`` preset
   pretrained on the clean training texts); the victim then predicts on the result. A
   re-filled identifier gets one new name at every occurrence (the most common fill).

The paper's ablations are parameters: ``detect=False`` purifies every input (CodePurify-E),
``level="identifiers"`` masks identifiers only (-S, no statements), ``level="statements"``
statements only (-V, no variables).

Where the official code differs from the paper, the paper is the default and the code's variant
an option: ``normalisation="sum"``; ``score="nll"`` scores each variant by the mean token
cross-entropy of ``y`` given it (the code's program-repair script) instead of the confidence
change; ``victim_mask="unk"`` shows the victim a single ``<unk>`` per occurrence / statement (the
code's scoring input) instead of the mask tokens; ``keep="keywords+punctuation"`` keeps
punctuation in masked statements. The official code also compares its threshold in opposite
directions in two tasks; here a low entropy always means poisoned.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from dece.data import Example, check_examples
from dece.defenses._support import (
    DiskCache,
    calibrate_threshold,
    default_cache_dir,
    side_text,
    stable_key,
    train_texts,
    victim_identity,
    with_side_text,
)
from dece.defenses.base import DEFENSES, Change, Purifier, PurifyResult
from dece.defenses.code_elements import LANGUAGES, Element, extract_elements, replace_spans
from dece.defenses.infill import group_spans, load_infiller

if TYPE_CHECKING:
    from dece.pipeline.data import DataBundle
    from dece.victim import Victim

__all__ = ["CodePurify", "ScoredInput", "suspicion_entropy"]

logger = logging.getLogger(__name__)

NORMALISATIONS = ("softmax", "sum")
LEVELS = ("both", "identifiers", "statements")
KEEPS = ("keywords", "keywords+punctuation")  # what a masked statement keeps (code_elements)
_KINDS = {"both": ("identifier", "statement"), "identifiers": ("identifier",),
          "statements": ("statement",)}  # fmt: skip


def suspicion_entropy(
    scores: Sequence[float] | np.ndarray, normalisation: str = "softmax", temperature: float = 1.0
) -> float:
    """Entropy (nats) of the suspicion scores ``[n]`` normalised into a distribution.

    ``softmax``: ``p = softmax(s / temperature)`` (the paper's Eq. 3). ``sum``: ``p = s / sum(s)``
    (the official code), with ``0 log 0 = 0`` and all-zero scores read as uniform (nothing stands
    out: entropy ``log n``). No elements: ``inf`` (nothing to judge, never detected).
    """
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {normalisation!r}")
    s = np.asarray(scores, dtype=float)
    if s.ndim != 1:
        raise ValueError(f"scores must be one-dimensional, got shape {s.shape}")
    if s.size == 0:
        return float("inf")
    if np.any(s < 0) and normalisation == "sum":
        raise ValueError("sum normalisation needs non-negative scores")
    if normalisation == "softmax":
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        z = s / temperature
        z = z - z.max()
        p = np.exp(z) / np.exp(z).sum()
    else:
        total = s.sum()
        if total <= 0:
            return float(np.log(s.size))
        p = s / total
    nz = p[p > 0]
    return float(-(nz * np.log(nz)).sum())


@dataclass
class ScoredInput:
    """One input's CodePurify analysis: its elements, the prediction ``y``, the confidence in it,
    the suspicion score of each element ``[n]`` and their entropy."""

    elements: list[Element]
    prediction: str
    confidence: float
    scores: np.ndarray
    entropy: float

    @property
    def top(self) -> Element | None:
        return self.elements[int(np.argmax(self.scores))] if self.elements else None


@DEFENSES.register("codepurify", display="CodePurify")
@dataclass
class CodePurify(Purifier):
    """Entropy-based purification (module docstring).

    Args:
        level: ``"both"`` (default), ``"identifiers"`` (-S) or ``"statements"`` (-V); natural
            language inputs use words whatever the level.
        detect: False purifies every input (-E).
        normalisation: ``"softmax"`` (paper) or ``"sum"`` (official code).
        temperature: softmax temperature (1 in the paper).
        threshold: a fixed entropy threshold; None calibrates it (:meth:`calibrate`).
        clean_fraction: calibration: the fraction of clean validation inputs that would be
            purified (the threshold is the entropy below which that fraction lies).
        calibration_max_examples: clean validation inputs used for calibration.
        calibrate_by: ``"all"`` (paper: one threshold from all clean inputs) or ``"prediction"``
            (ours, classification only; in neither the paper nor the official code): one
            threshold per predicted label, each from the clean inputs predicted as that label
            (labels unseen in calibration use the overall threshold). Where the true label rests
            on one keyword (technical debt: ``TODO``), clean inputs of that class have the
            trigger's signature, one element whose masking moves the confidence; a single
            threshold then purifies their keyword, a per-label one flags the same fraction of
            every predicted class and leaves the triggered inputs, all predicted as the
            target, to the target class's threshold.
        score: ``"delta"`` (paper: ``|c(x_i, y) - c(x, y)|``) or ``"nll"`` (official code).
        victim_mask: ``"mask"`` (paper) or ``"unk"`` (official code's scoring input).
        keep: what a masked statement keeps: ``"keywords"`` (paper) or
            ``"keywords+punctuation"`` (official code).
        language: ``"auto"``, ``"python"``, ``"java"``, ``"c"`` or ``"text"`` (word level).
        infiller: a Hugging Face id/path (masked LM or encoder-decoder) or ``"tiny-seq2seq"``
            (pretrained on the clean training texts of the bundle given to :meth:`prepare`); an
            infiller object (:mod:`dece.defenses.infill`) is accepted too.
        infiller_args: preset arguments (e.g. ``{"steps": 1500}``); must equal the victim's for
            its pretraining cache to be reused.
        infiller_seed: the preset's pretraining seed (the victim's ``seed`` for a cache hit).
        infiller_data: a dataset spec (:func:`dece.data.load_dataset`) whose clean training split
            pretrains the tiny infiller instead of the bundle's (e.g. ``bugs2fix-repair`` for a
            classifier of Bugs2Fix-derived code: the repair victims' cached infiller is reused).
        cache_dir: cache of the tiny preset and of the analyses (default ``$DECE_CACHE_DIR`` or
            ``~/.cache/dece``).
        cache: keep each input's prediction and scores on disk, keyed by a hash of the victim's
            weights, its decoding settings, the masking settings, the input and the prediction:
            the normalisations, thresholds and ablations of one victim then share one analysis
            (turn it off to time the defense, as ``benchmarks/codepurify_cost.py`` does).
        chunk: inputs whose variants are scored together.
    """

    name = "codepurify"
    level: str = "both"
    detect: bool = True
    normalisation: str = "softmax"
    temperature: float = 1.0
    threshold: float | None = None
    clean_fraction: float = 0.05
    calibration_max_examples: int | None = 200
    calibrate_by: str = "all"
    score: str = "delta"
    victim_mask: str = "mask"
    keep: str = "keywords"
    language: str = "auto"
    infiller: Any = "tiny-seq2seq"
    infiller_args: dict = field(default_factory=dict)
    infiller_seed: int = 42
    infiller_data: str | None = None
    cache_dir: str | None = None
    cache: bool = True
    chunk: int = 16

    def __post_init__(self) -> None:
        checks = {"level": (self.level, LEVELS), "normalisation": (self.normalisation,
                  NORMALISATIONS), "score": (self.score, ("delta", "nll")),
                  "victim_mask": (self.victim_mask, ("mask", "unk")), "keep": (self.keep, KEEPS),
                  "language": (self.language, ("auto", *LANGUAGES)),
                  "calibrate_by": (self.calibrate_by, ("all", "prediction"))}  # fmt: skip
        for key, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"codepurify: {key} must be one of {allowed}, got {value!r}")
        if not 0.0 <= self.clean_fraction < 1.0:
            raise ValueError(f"clean_fraction must be in [0, 1), got {self.clean_fraction}")
        if self.calibrate_by == "prediction" and self.threshold is not None:
            raise ValueError("codepurify: calibrate_by='prediction' calibrates the thresholds; "
                             "give no fixed threshold")  # fmt: skip
        if self.chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {self.chunk}")
        self._infiller: Any = None if isinstance(self.infiller, str) else self.infiller
        self._threshold: float | None = self.threshold
        self._by_prediction: dict[str, float] = {}
        self._prepare_s = 0.0
        self._store: DiskCache | None = None

    def params(self) -> dict[str, Any]:
        out = super().params()
        if not isinstance(out.get("infiller"), str):
            out["infiller"] = type(self.infiller).__name__
        return out

    # ------------------------------------------------------------------------------ set-up
    def prepare(self, bundle: DataBundle, victim: Victim) -> None:
        """Load the infiller (a tiny preset from the bundle's clean training texts) and, unless
        a threshold is fixed, calibrate it on the bundle's clean validation inputs."""
        t0 = time.perf_counter()
        self._load_infiller(self._infiller_texts(bundle))
        if self.detect and self.threshold is None:
            clean = bundle.valid.clean[: self.calibration_max_examples]
            if not clean:
                raise ValueError("codepurify: no clean validation rows to calibrate on")
            self.calibrate(clean, victim)
        self._prepare_s += time.perf_counter() - t0

    def _infiller_texts(self, bundle: DataBundle) -> list[str]:
        if self.infiller_data is None:
            return train_texts(bundle)
        from dece.data import load_dataset
        from dece.pipeline.data import DataBundle as Bundle

        return train_texts(Bundle.from_examples(load_dataset(self.infiller_data)["train"]))

    def _load_infiller(self, texts: Sequence[str] | None = None) -> Any:
        if self._infiller is None:
            self._infiller = load_infiller(
                self.infiller, train_texts=texts, cache_dir=self.cache_dir,
                seed=self.infiller_seed, **self.infiller_args,
            )  # fmt: skip
        return self._infiller

    def calibrate(self, clean: Sequence[Example], victim: Victim) -> float:
        """Set (and return) the threshold below which ``clean_fraction`` of ``clean`` lies (with
        ``calibrate_by="prediction"`` also one per predicted label)."""
        if self.calibrate_by == "prediction" and victim.task != "classification":
            raise ValueError("codepurify: calibrate_by='prediction' needs a classifier victim, "
                             f"got task {victim.task!r}")  # fmt: skip
        analysed = self.analyse(clean, victim)
        entropies = [s.entropy for s in analysed]
        self._threshold = calibrate_threshold(entropies, self.clean_fraction, below=True)
        self._by_prediction = {}
        if self.calibrate_by == "prediction":
            for label in sorted({a.prediction for a in analysed}):
                group = [a.entropy for a in analysed if a.prediction == label]
                self._by_prediction[label] = calibrate_threshold(
                    group, self.clean_fraction, below=True)  # fmt: skip
        logger.info("codepurify: threshold %.4f (per prediction: %s) from %d clean inputs "
                    "(fraction %.3f)", self._threshold, self._by_prediction, len(clean),
                    self.clean_fraction)  # fmt: skip
        return self._threshold

    def _thresholds(self, analysed: list[ScoredInput]) -> np.ndarray:
        """The threshold that applies to each analysed input ``[N]``."""
        return np.array([self._by_prediction.get(a.prediction, self._threshold)
                         for a in analysed], dtype=float)  # fmt: skip

    # ------------------------------------------------------------------------------ scoring
    def analyse(self, examples: Sequence[Example], victim: Victim) -> list[ScoredInput]:
        """Elements, prediction, suspicion scores and entropy of every input (steps 1-3)."""
        rows = check_examples(examples)
        predictions = self._predict(rows, victim)
        out: list[ScoredInput] = []
        for start in range(0, len(rows), self.chunk):
            out += self._analyse_chunk(rows[start : start + self.chunk],
                                       predictions[start : start + self.chunk], victim)  # fmt: skip
        return out

    def _predict(self, rows: list[Example], victim: Victim) -> list[str]:
        """The victim's predictions, from the disk cache when it already made them (greedy
        decoding is deterministic for given weights and settings)."""
        if not rows:
            return []
        ident = victim_identity(victim) if self.cache else None
        if ident is None:
            return victim.predict(rows)
        keys = [stable_key("prediction", ident, ex.source, ex.source_pair) for ex in rows]
        found = self._cache().get_many(keys)
        todo = [i for i, k in enumerate(keys) if k not in found]
        if todo:
            for i, pred in zip(todo, victim.predict([rows[i] for i in todo]), strict=True):
                found[keys[i]] = pred
                self._cache().put(keys[i], pred)
        return [found[k] for k in keys]

    def elements(self, example: Example) -> list[Element]:
        """The elements of ``example`` this level masks (natural language: words)."""
        kinds = _KINDS[self.level]
        return [e for e in self._all_elements(example) if e.kind in kinds or e.kind == "word"]

    def _analyse_chunk(
        self, rows: list[Example], preds: list[str], victim: Victim
    ) -> list[ScoredInput]:
        """Scores every element of every kind (level ``both``) — from the disk cache when this
        victim already scored the same input with the same masking — then keeps the level's."""
        elements = [self._all_elements(ex) for ex in rows]
        keys = self._cache_keys(rows, preds, victim)
        found = self._cache().get_many([k for k in keys if k]) if any(keys) else {}
        todo = [i for i, k in enumerate(keys) if not k or k not in found]
        variants = [self.masked(rows[i], el, victim) for i in todo for el in elements[i]]
        outputs = [preds[i] for i in todo for _ in elements[i]]
        base = self._measure([rows[i] for i in todo], [preds[i] for i in todo], victim)  # [T]
        masked = self._measure(variants, outputs, victim)  # [sum n_i]
        offset = 0
        for j, i in enumerate(todo):
            n = len(elements[i])
            values = masked[offset : offset + n].tolist()
            found[keys[i] or f"_{i}"] = {"base": float(base[j]), "values": values}
            offset += n
            if keys[i]:
                self._cache().put(keys[i], found[keys[i]])
        kinds = _KINDS[self.level]
        out = []
        for i, els in enumerate(elements):
            hit = found[keys[i] or f"_{i}"]
            keep = [k for k, e in enumerate(els) if e.kind in kinds or e.kind == "word"]
            values = np.asarray(hit["values"], dtype=float)[keep]
            scores = np.abs(values - hit["base"]) if self.score == "delta" else values
            entropy = suspicion_entropy(scores, self.normalisation, self.temperature)
            out.append(ScoredInput([els[k] for k in keep], preds[i], hit["base"], scores, entropy))
        return out

    def _all_elements(self, example: Example) -> list[Element]:
        kinds = _KINDS["both"]
        out = extract_elements(example.source, self.language, kinds=kinds, keep=self.keep)
        if example.source_pair is not None:
            out += extract_elements(example.source_pair, self.language, kinds=kinds,
                                    keep=self.keep, side="pair")  # fmt: skip
        return out

    def _cache(self) -> DiskCache:
        if self._store is None:
            root = self.cache_dir or default_cache_dir("codepurify")
            self._store = DiskCache(f"{root}/analysis.sqlite")
        return self._store

    def _cache_keys(self, rows: list[Example], preds: list[str], victim: Victim) -> list[str]:
        """One key per row (victim weights, decoding settings, masking settings, input and
        prediction), or "" when caching is off or the victim has no weights to hash."""
        ident = victim_identity(victim) if self.cache else None
        if ident is None:
            return ["" for _ in rows]
        infiller = self.infiller if isinstance(self.infiller, str) else type(self.infiller).__name__
        settings = [ident, self.score, self.victim_mask, self.keep, self.language, infiller,
                    sorted(self.infiller_args.items())]  # fmt: skip
        return [stable_key("codepurify", *settings, ex.source, ex.source_pair, p)
                for ex, p in zip(rows, preds, strict=True)]  # fmt: skip

    def _measure(self, rows: list[Example], outputs: list[str], victim: Victim) -> np.ndarray:
        if not rows:
            return np.zeros(0)
        if self.score == "delta":
            return victim.confidence(rows, outputs)
        if victim.task == "classification":
            return -np.log(np.clip(victim.confidence(rows, outputs), 1e-12, None))
        from dataclasses import replace

        pairs = zip(rows, outputs, strict=True)
        return victim.example_loss([replace(r, target=o) for r, o in pairs])

    def masked(self, example: Example, element: Element, victim: Victim) -> Example:
        """The variant of ``example`` with ``element`` masked, as the victim sees it."""
        text = side_text(example, element.side)
        tok = victim.tokenizer
        if self.victim_mask == "unk":
            unk = tok.unk_token or tok.mask_token or "<unk>"
            spans = element.spans if element.kind != "statement" else element.spans
            return with_side_text(
                example, element.side, replace_spans(text, spans, lambda i, old: unk)
            )
        mask = tok.mask_token or tok.unk_token or "<unk>"
        counter = self._infiller.mask_count if self._infiller is not None else (
            lambda old: max(1, len(tok.tokenize(" " + old)))
        )  # fmt: skip
        new = replace_spans(text, element.mask_spans, lambda i, old: mask * counter(old))
        return with_side_text(example, element.side, new)

    # ------------------------------------------------------------------------------ purify
    def purify(self, examples: Sequence[Example], victim: Victim) -> PurifyResult:
        """Analyse every input; re-fill the top element of the detected ones (all with -E)."""
        return self._purify(examples, victim)[0]

    def defend(self, examples: Sequence[Example], victim: Victim) -> tuple[PurifyResult, list[str]]:
        """:meth:`purify` and the victim's predictions on its output: the prediction already made
        for an unchanged input is reused, only purified inputs are predicted again (what a
        deployed CodePurify costs; the Table IV benchmark times this)."""
        result, analysed = self._purify(examples, victim)
        t0 = time.perf_counter()
        preds = [a.prediction for a in analysed]
        changed = [i for i, ch in enumerate(result.changes) if ch]
        if changed:
            for i, p in zip(changed, victim.predict([result.examples[i] for i in changed]),
                            strict=True):  # fmt: skip
                preds[i] = p
        result.seconds += time.perf_counter() - t0
        return result, preds

    def _purify(
        self, examples: Sequence[Example], victim: Victim
    ) -> tuple[PurifyResult, list[ScoredInput]]:
        t0 = time.perf_counter()
        rows = check_examples(examples)
        if self.detect and self._threshold is None:
            raise ValueError(
                "codepurify: no threshold; give threshold=..., or call prepare(bundle, victim) "
                "or calibrate(clean_examples, victim) first"
            )
        calls_before = dict(victim.stats.calls)
        infiller = self._load_infiller()
        fill_calls, fill_s = infiller.calls, infiller.seconds
        analysed = self.analyse(rows, victim)
        entropy = np.array([a.entropy for a in analysed], dtype=float)
        detected = (np.ones(len(rows), bool) if not self.detect
                    else entropy < self._thresholds(analysed))  # fmt: skip
        purified, changes, tops = [], [], []
        for ex, a, hit in zip(rows, analysed, detected, strict=True):
            top = a.top
            tops.append(
                []
                if top is None
                else [{"side": top.side, "start": s, "end": e} for s, e in top.spans]
            )
            if not hit or top is None:
                purified.append(ex)
                changes.append([])
                continue
            new_ex, edits = self._refill(ex, top, infiller)
            purified.append(new_ex)
            changes.append(edits)
        info = {
            "threshold": self._threshold, "normalisation": self.normalisation,
            "score": self.score, "level": self.level, "detect": self.detect,
            "n_detected": int(detected.sum()), "entropy": entropy.tolist(),
            "n_elements": [len(a.elements) for a in analysed], "top_spans": tops,
            "top_kind": [None if a.top is None else a.top.kind for a in analysed],
            "victim_calls": {k: v - calls_before.get(k, 0) for k, v in victim.stats.calls.items()},
            "infiller_calls": infiller.calls - fill_calls,
            "infiller_s": infiller.seconds - fill_s, "prepare_s": self._prepare_s,
        }  # fmt: skip
        if self._by_prediction:
            info["thresholds_by_prediction"] = dict(self._by_prediction)
        result = PurifyResult(purified, detected, -entropy, changes, time.perf_counter() - t0,
                              info)  # fmt: skip
        return result, analysed

    def _refill(
        self, example: Example, top: Element, infiller: Any
    ) -> tuple[Example, list[Change]]:
        text = side_text(example, top.side)
        groups = group_spans(text, top.mask_spans)
        fills = infiller.fill(text, groups)
        if top.kind in ("identifier", "word"):
            named = [f.strip() for f in fills if f.strip()]
            name = (
                Counter(named).most_common(1)[0][0]
                if named
                else ("_" if top.kind == "identifier" else "")
            )
            new = replace_spans(text, list(top.spans), lambda i, old: name)
            edits = [Change(top.side, s, e, text[s:e], name) for s, e in top.spans]
        else:
            extents = [(g[0][0], g[-1][1]) for g in groups]
            new = replace_spans(text, extents, lambda i, old: fills[i])
            ((s, e),) = top.spans
            edits = [
                Change(
                    top.side,
                    s,
                    e,
                    text[s:e],
                    replace_spans(
                        text[s:e], [(a - s, b - s) for a, b in extents], lambda i, old: fills[i]
                    ),
                )
            ]
        return with_side_text(example, top.side, new), edits
