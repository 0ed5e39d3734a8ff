"""RFC 9457 problem details: every error the service answers is one ``application/problem+json`` object.

``type`` is a stable URI naming the kind of problem (documented in
docs/service.md), ``title`` its short summary, ``detail`` what was wrong with
this request, naming the field at fault when there is one.
"""

from __future__ import annotations

from typing import Union

import msgspec
from aiohttp import web

__all__ = ["PROBLEM_TYPES", "Problem", "ProblemError", "field_of", "problem_response"]

#: Base of the ``type`` URIs; each kind is documented under this name in docs/service.md.
_BASE = "https://sendcore.dev/problems/"

#: The kinds of problem the service answers with: name -> (status, title).
PROBLEM_TYPES: dict[str, tuple[int, str]] = {
    "malformed-body": (400, "The request body is not valid JSON or NDJSON"),
    "invalid-request": (400, "A parameter or field of the request is invalid"),
    "unauthorized": (401, "A valid bearer token is required"),
    "forbidden": (403, "The token lacks the scope this endpoint needs"),
    "not-found": (404, "No such resource"),
    "method-not-allowed": (405, "The method is not allowed on this resource"),
    "body-too-large": (413, "The request body or its number of items is over the limit"),
    "unsupported-media-type": (415, "The request's content type is not accepted here"),
    "too-late": (409, "The send was already handed to its provider"),
    "cursor-expired": (410, "The outcomes before this cursor are no longer kept"),
    "delivery-report-rejected": (422, "The provider rejected the delivery report"),
    "rate-limited": (429, "Too many requests for this token"),
    "max-pending": (429, "The engine holds max_pending sends; retry later"),
    "not-ready": (503, "The service is starting or stopping"),
    "internal": (500, "Internal error"),
}


class Problem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One problem details object (RFC 9457); ``field`` is an extension naming the input at fault."""

    type: str
    title: str
    status: int
    detail: str = ""
    field: Union[str, None] = None
    instance: Union[str, None] = None


_encode = msgspec.json.Encoder().encode


def problem_response(kind: str, detail: str = "", *, field: Union[str, None] = None,
                     headers: Union[dict[str, str], None] = None, instance: Union[str, None] = None) -> web.Response:
    """The ``application/problem+json`` response of one ``kind`` of ``PROBLEM_TYPES``."""
    status, title = PROBLEM_TYPES[kind]
    body = _encode(Problem(type=_BASE + kind, title=title, status=status, detail=detail, field=field,
                           instance=instance))
    return web.Response(body=body, status=status, content_type="application/problem+json", headers=headers)


class ProblemError(Exception):
    """Raised by a handler to answer with a problem; the middleware turns it into the response."""

    def __init__(self, kind: str, detail: str = "", *, field: Union[str, None] = None,
                 headers: Union[dict[str, str], None] = None) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.field = field
        self.headers = headers

    def response(self, instance: Union[str, None] = None) -> web.Response:
        """This problem as a response."""
        return problem_response(self.kind, self.detail, field=self.field, headers=self.headers, instance=instance)


def field_of(message: str) -> Union[str, None]:
    """The field a sendcore error message starts with ("to: not a valid number" -> "to"), or None."""
    head, sep, _ = message.partition(":")
    if sep and head and all(c.isalnum() or c in "._[]" for c in head):
        return head
    return None
