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
3. **Detection statistic** (``statistic``, :mod:`dece.defenses.codepurify_stats`): ``entropy``
   (the paper's): the entropy of the normalised suspicions, ``softmax`` (Eq. 3) or ``sum``
   (``s_i / sum_j s_j``, the official code), poisoned when *low* (``H < threshold``); or ours,
   ``max_delta`` (``max_i s_i``) and ``entropy_gap`` (``ln N - H``), poisoned when high. With
   ``s_i`` in ``[0, 1]`` the softmax entropy of ``N >= 2`` elements lies within 0.124 of ``ln N``
   for any victim: it counts elements, and a trigger (more elements) looks cleaner. The entropy
   statistics judge inputs with ``N >= 2`` only (``N = 1``: ``H = 0`` always); the others are
   never flagged by them, left out of calibration and counted (``n_unjudged``). The threshold is
   fixed, or calibrated on clean validation inputs so that a chosen fraction
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

**Presets** (``preset=``, :data:`dece.defenses.codepurify_stats.PRESETS`; explicit arguments
that differ from the defaults override them): ``paper`` is Eq. 1-3 as printed (softmax entropy of
the confidence changes, mask tokens with a statement's keywords kept for the victim too,
calibrated threshold); ``official`` is the authors' released code (``normalisation="sum"``;
``score="nll"``, the mean token cross-entropy of ``y`` given each variant; ``victim_mask="unk"``,
one ``<unk>`` per occurrence / whole statement; ``keep="keywords+punctuation"``; fixed
``threshold=0.1``; its program-repair scripts); ``official_defect`` is its defect-detection
CodeBERT script (the same, but the victim's probability change ``delta`` as score and C keywords
kept in the infiller's statement masks; the script purifies at ``H <= 0.1``, here ``H < 0.1``).
The official code also compares its threshold in opposite directions in two tasks, and flags
``N = 1`` inputs (``H = 0``); here a low entropy always means poisoned and ``N = 1`` is not
judged by the entropy. **The default is neither**: the paper's delta scores and
masks for the infiller, the whole statement masked for the victim, and
``statistic="entropy_gap"`` (``ln N - H``, revision 4, issue 24): the statistic with the highest
threshold-free AUROC on 100 clean + 100 triggered *validation* inputs of the MiniLM defect
victim (DeadCode 5%), declared by ``benchmarks/codepurify_premise.py --step0`` before any test
cell ran (``benchmarks/results/codepurify_premise_selection.json``: entropy_gap 0.902,
max_delta 0.897, entropy 0.382; the two are within noise of each other, the rule was "the
highest"). Revisions 2-3 defaulted to ``max_delta``, chosen a priori.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from dece.data import Example, check_examples
from dece.defenses._support import (
    DiskCache,
    calibrate_threshold,
    default_cache_dir,
    predict_with_confidence,
    side_text,
    stable_key,
    texts_of,
    train_texts,
    victim_identity,
    with_side_text,
)
from dece.defenses.base import DEFENSES, Change, Purifier, PurifyResult
from dece.defenses.code_elements import (
    LANGUAGES,
    Element,
    extract_elements,
    replace_spans,
    truncation_cutoff,
)
from dece.defenses.codepurify_stats import (
    MIN_ELEMENTS,
    NORMALISATIONS,
    PRESETS,
    STATISTICS,
    suspicion_entropy,
    suspicion_statistic,
)
from dece.defenses.infill import group_spans, load_infiller

if TYPE_CHECKING:
    from dece.pipeline.data import DataBundle
    from dece.victim import Victim

__all__ = ["PRESETS", "REVISION", "CodePurify", "ScoredInput", "suspicion_entropy"]

logger = logging.getLogger(__name__)

LEVELS = ("both", "identifiers", "statements")
KEEPS = ("keywords", "keywords+punctuation")  # what a masked statement keeps (code_elements)
#: Bumped whenever unchanged arguments change behaviour; recorded in every cell (``result.json``:
#: ``purify_revision``; cells without it are revision 1) and in the analysis cache key.
#: 2 (issue 24): default statistic ``max_delta``; ``N <= 1`` inputs left out of the entropy test
#: and its calibration; elements past the victim's truncation skipped; the victim sees a masked
#: statement whole (``victim_statement="whole"``).
#: 3 (issue 27): the victim predicts in length-sorted batches by a token budget
#: (:data:`dece.victim.BATCHING_REVISION`), which can shift a greedy output.
#: 4 (issue 24): default statistic ``entropy_gap``, declared on validation inputs (module docstring).
#: 5 (issue 27): a classifier's prediction and its confidence come from one forward
#: (:meth:`dece.victim.Victim.predict_with_confidence`), not from two passes over the input in
#: different batches: float-level differences that can move a score across a threshold.
REVISION = 5
_KINDS = {"both": ("identifier", "statement"), "identifiers": ("identifier",),
          "statements": ("statement",)}  # fmt: skip


@dataclass
class ScoredInput:
    """One input's CodePurify analysis: its elements, the prediction ``y``, the confidence in it,
    the suspicion score of each element ``[n]``, their entropy and the suspicion of the input
    under each statistic (``{name: value}``, higher = more suspicious; ``-inf``: not judged)."""

    elements: list[Element]
    prediction: str
    confidence: float
    scores: np.ndarray
    entropy: float
    statistics: dict[str, float] = field(default_factory=dict)

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
        preset: ``"paper"`` (the paper's), ``"official"``, ``"official_defect"`` (the authors'
            code) or None (the defaults; module docstring).
        statistic: ``"entropy_gap"`` (default, ours: ``ln N - H``), ``"max_delta"`` (ours:
            ``max_i I_i``) or ``"entropy"`` (the paper's); calibration, decision and purification are the same for each.
        normalisation: ``"softmax"`` (paper) or ``"sum"`` (official code): the entropy's.
        temperature: softmax temperature (1 in the paper).
        threshold: a fixed threshold in the statistic's units (``entropy``: an entropy, flagged
            below it; the others: flagged above it); None calibrates it (:meth:`calibrate`).
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
        victim_statement: what the victim sees of a masked statement: ``"whole"`` (default, as
            the official ``<unk>``: every token masked, keywords too) or ``"keep"`` (the paper's
            mask: keywords kept, e.g. ``int`` of ``int VAR = 0 ;``). The infiller always gets
            the ``keep`` masks.
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
    preset: str | None = None
    statistic: str = "entropy_gap"
    normalisation: str = "softmax"
    temperature: float = 1.0
    threshold: float | None = None
    clean_fraction: float = 0.05
    calibration_max_examples: int | None = 200
    calibrate_by: str = "all"
    score: str = "delta"
    victim_mask: str = "mask"
    victim_statement: str = "whole"
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
        self._apply_preset()
        checks = {"level": (self.level, LEVELS), "normalisation": (self.normalisation,
                  NORMALISATIONS), "score": (self.score, ("delta", "nll")),
                  "victim_mask": (self.victim_mask, ("mask", "unk")), "keep": (self.keep, KEEPS),
                  "language": (self.language, ("auto", *LANGUAGES)),
                  "calibrate_by": (self.calibrate_by, ("all", "prediction")),
                  "statistic": (self.statistic, STATISTICS),
                  "victim_statement": (self.victim_statement, ("whole", "keep"))}  # fmt: skip
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
        self._calibration_unjudged = 0
        self._prepare_s = 0.0
        self._store: DiskCache | None = None

    def _apply_preset(self) -> None:
        """Set the preset's arguments where the caller left the default."""
        if self.preset is None:
            return
        if self.preset not in PRESETS:
            raise ValueError(f"codepurify: preset must be one of {tuple(PRESETS)}, "
                             f"got {self.preset!r}")  # fmt: skip
        defaults = {f.name: f.default for f in fields(self)}
        for key, value in PRESETS[self.preset].items():
            if getattr(self, key) == defaults[key]:
                setattr(self, key, value)

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

        return texts_of(load_dataset(self.infiller_data)["train"])

    def _load_infiller(self, texts: Sequence[str] | None = None) -> Any:
        if self._infiller is None:
            self._infiller = load_infiller(
                self.infiller, train_texts=texts, cache_dir=self.cache_dir,
                seed=self.infiller_seed, **self.infiller_args,
            )  # fmt: skip
        return self._infiller

    def calibrate(self, clean: Sequence[Example], victim: Victim) -> float:
        """Set (and return) the threshold that flags ``clean_fraction`` of ``clean`` (with
        ``calibrate_by="prediction"`` also one per predicted label). Inputs the statistic does
        not judge (entropy: ``N <= 1``) are left out and counted."""
        if self.calibrate_by == "prediction" and victim.task != "classification":
            raise ValueError("codepurify: calibrate_by='prediction' needs a classifier victim, "
                             f"got task {victim.task!r}")  # fmt: skip
        analysed = self.analyse(clean, victim)
        values = [a.statistics[self.statistic] for a in analysed]
        self._calibration_unjudged = int(sum(not np.isfinite(v) for v in values))
        self._threshold = self._from_cut(calibrate_threshold(values, self.clean_fraction,
                                                             below=False))  # fmt: skip
        self._by_prediction = {}
        if self.calibrate_by == "prediction":
            for label in sorted({a.prediction for a in analysed}):
                group = [a.statistics[self.statistic] for a in analysed if a.prediction == label]
                if any(np.isfinite(group)):
                    self._by_prediction[label] = self._from_cut(
                        calibrate_threshold(group, self.clean_fraction, below=False))  # fmt: skip
        logger.info("codepurify: %s threshold %.4f (per prediction: %s) from %d clean inputs "
                    "(%d not judged; fraction %.3f)", self.statistic, self._threshold,
                    self._by_prediction, len(clean), self._calibration_unjudged,
                    self.clean_fraction)  # fmt: skip
        return self._threshold

    def _from_cut(self, cut: float) -> float:
        """A threshold in the statistic's units from a cut on the suspicion (and back: the map
        is its own inverse). ``entropy``: flagged when ``-H > cut``, i.e. ``H < -cut``."""
        return -cut if self.statistic == "entropy" else cut

    def _cuts(self, analysed: list[ScoredInput]) -> np.ndarray:
        """The cut on the suspicion that applies to each analysed input ``[N]``."""
        return np.array([self._from_cut(self._by_prediction.get(a.prediction, self._threshold))
                         for a in analysed], dtype=float)  # fmt: skip

    # ------------------------------------------------------------------------------ scoring
    def analyse(self, examples: Sequence[Example], victim: Victim) -> list[ScoredInput]:
        """Elements, prediction, suspicion scores and entropy of every input (steps 1-3)."""
        rows = check_examples(examples)
        predictions, base = self._predict(rows, victim)
        out: list[ScoredInput] = []
        for start in range(0, len(rows), self.chunk):
            part = slice(start, start + self.chunk)
            out += self._analyse_chunk(rows[part], predictions[part], victim, base[part])
        return out

    def _predict(self, rows: list[Example], victim: Victim) -> tuple[list[str], list[float | None]]:
        """The victim's predictions, from the disk cache when it already made them (greedy
        decoding is deterministic for given weights and settings), and the input's measure
        (:meth:`_measure`) where the prediction's forward gave it: a classifier's prediction
        and its confidence come from one forward (revision 5), so the input is not run again;
        None where it is still to be measured (generation, or a prediction from the cache)."""
        if not rows:
            return [], []
        ident = victim_identity(victim) if self.cache else None
        keys = [stable_key("prediction", ident, ex.source, ex.source_pair) for ex in rows]
        found = self._cache().get_many(keys) if ident is not None else {}
        todo = [i for i, k in enumerate(keys) if k not in found]
        base: list[float | None] = [None] * len(rows)
        if todo:
            todo_rows = [rows[i] for i in todo]
            if victim.task == "classification":
                preds, conf = predict_with_confidence(victim, todo_rows)
                for i, c in zip(todo, self._from_confidence(conf), strict=True):
                    base[i] = float(c)
            else:
                preds = victim.predict(todo_rows)
            for i, pred in zip(todo, preds, strict=True):
                found[keys[i]] = pred
                if ident is not None:
                    self._cache().put(keys[i], pred)
        return [found[k] for k in keys], base

    def elements(self, example: Example) -> list[Element]:
        """The elements of ``example`` this level masks (natural language: words)."""
        kinds = _KINDS[self.level]
        return [e for e in self._all_elements(example) if e.kind in kinds or e.kind == "word"]

    def _analyse_chunk(
        self, rows: list[Example], preds: list[str], victim: Victim,
        known: list[float | None],
    ) -> list[ScoredInput]:  # fmt: skip
        """Scores every element of every kind (level ``both``) — from the disk cache when this
        victim already scored the same input with the same masking — then keeps the level's.
        ``known``: each input's own measure where the prediction already gave it."""
        elements = [self._in_window(ex, self._all_elements(ex), victim) for ex in rows]
        keys = self._cache_keys(rows, preds, victim)
        found = self._cache().get_many([k for k in keys if k]) if any(keys) else {}
        todo = [i for i, k in enumerate(keys) if not k or k not in found]
        variants = [self.masked(rows[i], el, victim) for i in todo for el in elements[i]]
        outputs = [preds[i] for i in todo for _ in elements[i]]
        unknown = [i for i in todo if known[i] is None]  # the inputs still to be measured
        measured = self._measure([rows[i] for i in unknown], [preds[i] for i in unknown], victim)
        base = {i: known[i] for i in todo}
        base.update(zip(unknown, measured.tolist(), strict=True))
        masked = self._measure(variants, outputs, victim)  # [sum n_i]
        offset = 0
        for i in todo:
            n = len(elements[i])
            values = masked[offset : offset + n].tolist()
            found[keys[i] or f"_{i}"] = {"base": float(base[i]), "values": values}
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
            stats = {name: suspicion_statistic(scores, name, self.normalisation,
                                               self.temperature) for name in STATISTICS}  # fmt: skip
            out.append(ScoredInput([els[k] for k in keep], preds[i], hit["base"], scores, entropy,
                                   stats))  # fmt: skip
        return out

    @staticmethod
    def _in_window(example: Example, elements: list[Element], victim: Victim) -> list[Element]:
        """The elements that start inside the victim's truncation window (the rest would score
        0: masking them changes nothing the victim sees). Text pairs keep every element."""
        limit = getattr(victim, "max_source_length", None)
        if limit is None or example.source_pair is not None:
            return elements
        cut = truncation_cutoff(victim.tokenizer, example.source, int(limit))
        return [e for e in elements if min(a for a, _ in e.spans) < cut]

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
                    sorted(self.infiller_args.items()), self.victim_statement,
                    f"revision {REVISION}"]  # fmt: skip
        return [stable_key("codepurify", *settings, ex.source, ex.source_pair, p)
                for ex, p in zip(rows, preds, strict=True)]  # fmt: skip

    def _measure(self, rows: list[Example], outputs: list[str], victim: Victim) -> np.ndarray:
        """``[N]`` what a suspicion compares: the confidence in each output (``delta``) or its
        mean token NLL (``nll``)."""
        if not rows:
            return np.zeros(0)
        if self.score == "delta" or victim.task == "classification":
            return self._from_confidence(victim.confidence(rows, outputs))
        from dataclasses import replace

        pairs = zip(rows, outputs, strict=True)
        return victim.example_loss([replace(r, target=o) for r, o in pairs])

    def _from_confidence(self, conf: np.ndarray) -> np.ndarray:
        """The measure of a confidence: itself (``delta``) or, a classifier's NLL, ``-log``."""
        conf = np.asarray(conf, dtype=float)
        return conf if self.score == "delta" else -np.log(np.clip(conf, 1e-12, None))

    def masked(self, example: Example, element: Element, victim: Victim) -> Example:
        """The variant of ``example`` with ``element`` masked, as the victim sees it."""
        text = side_text(example, element.side)
        tok = victim.tokenizer
        # identifiers and words mask every occurrence (their mask_spans are their spans)
        spans = element.spans if self.victim_statement == "whole" else element.mask_spans
        if self.victim_mask == "unk":
            unk = tok.unk_token or tok.mask_token or "<unk>"
            return with_side_text(
                example, element.side, replace_spans(text, spans, lambda i, old: unk)
            )
        mask = tok.mask_token or tok.unk_token or "<unk>"
        counter = self._infiller.mask_count if self._infiller is not None else (
            lambda old: max(1, len(tok.tokenize(" " + old)))
        )  # fmt: skip
        new = replace_spans(text, spans, lambda i, old: mask * counter(old))
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
        suspicion = np.array([a.statistics[self.statistic] for a in analysed], dtype=float)
        detected = (np.ones(len(rows), bool) if not self.detect
                    else suspicion > self._cuts(analysed))  # fmt: skip
        purified, changes = [], []
        for ex, a, hit in zip(rows, analysed, detected, strict=True):
            if not hit or a.top is None:
                purified.append(ex)
                changes.append([])
                continue
            new_ex, edits = self._refill(ex, a.top, infiller)
            purified.append(new_ex)
            changes.append(edits)
        info = self._info(analysed, detected)
        info.update({
            "victim_calls": {k: v - calls_before.get(k, 0) for k, v in victim.stats.calls.items()},
            "infiller_calls": infiller.calls - fill_calls,
            "infiller_s": infiller.seconds - fill_s, "prepare_s": self._prepare_s,
        })  # fmt: skip
        elements = [[{"side": e.side, "start": st, "end": en, "score": float(sc), "kind": e.kind}
                     for e, sc in zip(a.elements, a.scores, strict=True) for st, en in e.spans]
                    for a in analysed]  # fmt: skip
        result = PurifyResult(purified, detected, suspicion, changes, time.perf_counter() - t0,
                              info, elements)  # fmt: skip
        return result, analysed

    def _info(self, analysed: list[ScoredInput], detected: np.ndarray) -> dict[str, Any]:
        """Settings, decisions and the per-input analysis (scores, element spans, confidence,
        every statistic) that :func:`dece.defenses.codepurify_stats.premise_metrics` reads."""
        tops = [[] if a.top is None else [{"side": a.top.side, "start": s, "end": e}
                                          for s, e in a.top.spans] for a in analysed]  # fmt: skip
        info = {
            "threshold": self._threshold, "normalisation": self.normalisation,
            "score": self.score, "level": self.level, "detect": self.detect,
            "statistic": self.statistic, "victim_mask": self.victim_mask,
            "victim_statement": self.victim_statement, "keep": self.keep,
            "preset": self.preset, "revision": REVISION,
            "n_detected": int(detected.sum()),
            "n_unjudged": int(sum(len(a.scores) < MIN_ELEMENTS[self.statistic]
                                  for a in analysed)),
            "calibration_unjudged": self._calibration_unjudged,
            "entropy": [a.entropy for a in analysed],
            "n_elements": [len(a.elements) for a in analysed], "top_spans": tops,
            "top_kind": [None if a.top is None else a.top.kind for a in analysed],
            "confidence": [float(a.confidence) for a in analysed],
            "scores": [a.scores.tolist() for a in analysed],
            "element_spans": [[[(e.side, s, t) for s, t in e.spans] for e in a.elements]
                              for a in analysed],
            "statistics": {name: [a.statistics[name] for a in analysed] for name in STATISTICS},
        }  # fmt: skip
        if self._by_prediction:
            info["thresholds_by_prediction"] = dict(self._by_prediction)
        return info

    def _refill(
        self, example: Example, top: Element, infiller: Any
    ) -> tuple[Example, list[Change]]:
        text = side_text(example, top.side)
        groups = group_spans(text, top.mask_spans)
        fills = infiller.fill(text, groups)
        if top.kind in ("identifier", "word"):
            named = [f.strip() for f in fills if f.strip()]
            fallback = "_" if top.kind == "identifier" else ""
            name = Counter(named).most_common(1)[0][0] if named else fallback
            new = replace_spans(text, list(top.spans), lambda i, old: name)
            edits = [Change(top.side, s, e, text[s:e], name) for s, e in top.spans]
        else:
            extents = [(g[0][0], g[-1][1]) for g in groups]
            new = replace_spans(text, extents, lambda i, old: fills[i])
            ((s, e),) = top.spans
            inner = [(a - s, b - s) for a, b in extents]
            edits = [Change(top.side, s, e, text[s:e],
                            replace_spans(text[s:e], inner, lambda i, old: fills[i]))]  # fmt: skip
        return with_side_text(example, top.side, new), edits
