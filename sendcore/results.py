"""What a provider's ``send()`` may return, checked in one place (R18).

The engine, the core's feedback stage and the provider contract test all ask
the same two questions: is the answer one result per send (``shape_problem``),
and is each result one the journal can store (``storable``). The contract test
is stricter on top (a ``RateLimited`` must carry a positive wait), because it
tells a provider's author what to fix rather than deciding what to do.
"""

from __future__ import annotations

from typing import Any, Union

import msgspec

from .send import Accepted, InvalidResult, PermanentFailure, RateLimited, TemporaryFailure

__all__ = ["RESULT_NAMES", "RESULT_TYPES", "shape_problem", "storable"]

#: The result types a provider returns (``InvalidResult`` is the engine's own, for answers it could not use).
RESULT_TYPES = (Accepted, TemporaryFailure, PermanentFailure, RateLimited)
#: The same, as a phrase for error messages.
RESULT_NAMES = "Accepted, TemporaryFailure, PermanentFailure or RateLimited"

_STORED = (*RESULT_TYPES, InvalidResult)
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[Union[_STORED]])  # type: ignore[valid-type]
_CODEC_ERRORS = (msgspec.MsgspecError, TypeError, ValueError, OverflowError)


def shape_problem(results: Any, n: int, provider: str) -> Union[str, None]:
    """Why ``results`` is not one result per send of a batch of ``n`` (a list or tuple), or None if it is."""
    if not isinstance(results, (list, tuple)):
        return f"provider {provider!r} returned {type(results).__name__}, not a list of results"
    if len(results) != n:
        return (f"provider {provider!r} returned {len(results)} results for a batch of {n} sends; "
                "send() must return a list with exactly one result per send, in order")
    return None


def storable(results: Any) -> list[Any]:
    """``results`` with each one the journal cannot store replaced by an ``InvalidResult`` naming what is wrong.

    Checked by a round trip through the journal's own encoding, so what the
    core records is exactly what replay will read back. O(len(results)).
    """
    results = list(results)
    try:
        _decoder.decode(_encoder.encode(results))
        return results
    except _CODEC_ERRORS:
        pass
    out: list[Any] = []
    for r in results:
        if type(r) not in _STORED:
            out.append(InvalidResult(f"invalid result {type(r).__name__} from the provider (not a sendcore Result)"))
            continue
        try:
            _decoder.decode(_encoder.encode([r]))
            out.append(r)
        except _CODEC_ERRORS as exc:
            out.append(InvalidResult(f"invalid {type(r).__name__} from the provider: {exc}"))
    return out
