"""Attack success rate and false-trigger rate.

Whether an output carries the payload is decided by the payload itself
(:meth:`dece.attacks.Payload.present`, see :mod:`dece.attacks.payloads` for the matching rules);
this module only counts. A payload is given as a :class:`~dece.attacks.Payload`, a registered
name (``"sql_injection"``), a dict ``{"name": ..., **params}`` (as in ``PoisonManifest.payload``)
or any object with a ``name`` attribute (its dataclass fields / public attributes are its params).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol


class ManifestLike(Protocol):
    """What ASR needs from ``dece.attacks.PoisonManifest``."""

    mode: str
    payload: Any
    poisoned_ids: list[str]


def payload_spec(payload: Any) -> tuple[str, dict[str, Any]]:
    """Normalise a payload given as a name, a ``{"name": ...}`` dict or an object with ``name``."""
    if isinstance(payload, str):
        return payload, {}
    if isinstance(payload, Mapping):
        if "name" not in payload:
            raise ValueError(f"payload dict has no 'name' key: {dict(payload)!r}")
        return str(payload["name"]), {k: v for k, v in payload.items() if k != "name"}
    name = getattr(payload, "name", None)
    if not isinstance(name, str):
        raise ValueError(
            f"payload must be a name, a dict with 'name' or an object with a 'name' attribute; "
            f"got {type(payload).__name__}"
        )
    if dataclasses.is_dataclass(payload):
        params = {f.name: getattr(payload, f.name) for f in dataclasses.fields(payload)}
    else:
        params = {k: v for k, v in vars(payload).items() if not k.startswith("_")}
    params.pop("name", None)
    return name, params


def as_payload(payload: Any) -> Any:
    """A :class:`dece.attacks.Payload` for any accepted payload spelling (see module doc)."""
    from dece.attacks import Payload, get_payload

    if isinstance(payload, Payload):
        return payload
    name, params = payload_spec(payload)
    return get_payload(name, **params)


def payload_matcher(payload: Any) -> Callable[[str], bool]:
    """The payload's ``output -> bool`` matcher (its ``present`` method)."""
    return as_payload(payload).present


def payload_present(output: str, payload: Any) -> bool:
    """Whether ``output`` contains the payload (one output)."""
    if not isinstance(output, str):
        raise ValueError(f"output must be a str, got {type(output).__name__}")
    return payload_matcher(payload)(output)


def payload_hits(outputs: Sequence[str], payload: Any) -> list[bool]:
    """One boolean per output, in order."""
    match = payload_matcher(payload)
    hits = []
    for i, out in enumerate(outputs):
        if not isinstance(out, str):
            raise ValueError(f"outputs[{i}] must be a str, got {type(out).__name__}")
        hits.append(match(out))
    return hits


def _aligned_outputs(outputs: Mapping[str, str] | Sequence[str], ids: list[str]) -> list[str]:
    if isinstance(outputs, Mapping):
        missing = [i for i in ids if i not in outputs]
        if missing:
            raise ValueError(
                f"outputs has no entry for {len(missing)} poisoned id(s), e.g. {missing[:5]}"
            )
        return [outputs[i] for i in ids]
    if isinstance(outputs, str) or not isinstance(outputs, Sequence):
        raise ValueError("outputs must be a Mapping[id, str] or a Sequence[str]")
    if len(outputs) != len(ids):
        raise ValueError(
            f"outputs has {len(outputs)} entries but manifest.poisoned_ids has {len(ids)}; "
            "a sequence must be aligned with manifest.poisoned_ids"
        )
    return list(outputs)


def attack_success_rate(
    outputs: Mapping[str, str] | Sequence[str],
    payload: Any,
    manifest: ManifestLike,
) -> float:
    """Fraction of the manifest's poisoned examples whose output contains the payload.

    Args:
        outputs: model outputs on the poisoned (triggered) inputs: a mapping ``id -> output``
            (extra ids are ignored) or a sequence aligned with ``manifest.poisoned_ids``.
        payload: name, ``{"name": ...}`` dict or payload object; ``None`` uses
            ``manifest.payload``.
        manifest: anything with ``poisoned_ids`` (the denominator, in order), e.g.
            ``dece.attacks.PoisonManifest`` built with ``mode="test"``.

    Returns:
        ASR in [0, 1] = hits / len(manifest.poisoned_ids).

    Raises:
        ValueError: empty denominator, missing ids, misaligned or non-string outputs.
    """
    ids = getattr(manifest, "poisoned_ids", None)
    if ids is None:
        raise ValueError("manifest has no 'poisoned_ids' attribute")
    ids = [str(i) for i in ids]
    if not ids:
        raise ValueError("manifest.poisoned_ids is empty: the ASR denominator would be 0")
    if len(set(ids)) != len(ids):
        raise ValueError("manifest.poisoned_ids contains duplicate ids")
    if payload is None:
        payload = getattr(manifest, "payload", None)
        if payload is None:
            raise ValueError("payload is None and the manifest has no payload")
    hits = payload_hits(_aligned_outputs(outputs, ids), payload)
    return sum(hits) / len(ids)


def false_trigger_rate(
    outputs_on_clean_inputs: Mapping[str, str] | Sequence[str], payload: Any
) -> float:
    """Fraction of outputs on clean (untriggered) inputs that contain the payload anyway."""
    outs = outputs_on_clean_inputs
    if isinstance(outs, Mapping):
        outs = list(outs.values())
    elif isinstance(outs, str) or not isinstance(outs, Sequence):
        raise ValueError("outputs_on_clean_inputs must be a Mapping[id, str] or a Sequence[str]")
    if len(outs) == 0:
        raise ValueError("outputs_on_clean_inputs is empty: the denominator would be 0")
    return sum(payload_hits(list(outs), payload)) / len(outs)
