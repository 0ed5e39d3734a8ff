"""Twilio's webhook signature (``X-Twilio-Signature``): compute it and check a callback against it.

Twilio signs each webhook with base64(HMAC-SHA1(key = the account's auth token,
message = the full URL it called, followed by every POST parameter's name and
value, concatenated in order of name)). Worked example from Twilio's security
docs: token ``12345``, URL ``https://mycompany.com/myapp.php?foo=1&bar=2`` and
parameters ``CallSid=CA1234567890ABCDE, Caller=+14158675309, Digits=1234,
From=+14158675309, To=+18005551212`` sign the string
``https://mycompany.com/myapp.php?foo=1&bar=2CallSidCA1234567890ABCDECaller+14158675309Digits1234From+14158675309To+18005551212``
to ``RSOYDt4T1cUTdK1PDd93/VVr8B8=``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any, Iterable, Mapping, Union
from urllib.parse import urlsplit, urlunsplit

__all__ = ["SIGNATURE_HEADER", "compute_signature", "find_header", "form_pairs", "signature_matches"]

#: The header Twilio puts its signature in.
SIGNATURE_HEADER = "X-Twilio-Signature"

_DEFAULT_PORTS = {"https": 443, "http": 80}


def form_pairs(payload: Any) -> list[tuple[str, str]]:
    """Every (name, value) pair of a callback's form fields, repeated names included.

    ``payload`` is a plain mapping (a value may be a list of values) or a
    multidict such as aiohttp's ``request.post()``, whose ``items()`` repeats
    a name once per value.
    """
    pairs: list[tuple[str, str]] = []
    for name, value in payload.items():
        if isinstance(value, (list, tuple)):
            pairs.extend((str(name), str(v)) for v in value)
        else:
            pairs.append((str(name), str(value)))
    return pairs


def compute_signature(token: str, url: str, pairs: Iterable[tuple[str, str]]) -> str:
    """The ``X-Twilio-Signature`` Twilio would send for a POST of ``pairs`` to ``url``. O(n log n) in the fields."""
    message = url + "".join(name + value for name, value in sorted(pairs))
    digest = hmac.new(token.encode(), message.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _url_variants(url: str) -> list[str]:
    """``url`` as given, then with its default port added or removed.

    Twilio signs the URL it was configured with; a proxy may add or drop
    ``:443``, so Twilio's own validators accept either form, as this does.
    """
    parts = urlsplit(url)
    default = _DEFAULT_PORTS.get(parts.scheme)
    if default is None or not parts.hostname:
        return [url]
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    auth = parts.netloc.rpartition("@")[0]
    prefix = auth + "@" if auth else ""
    if parts.port is None:
        other = prefix + f"{host}:{default}"
    elif parts.port == default:
        other = prefix + host
    else:
        return [url]
    return [url, urlunsplit((parts.scheme, other, parts.path, parts.query, parts.fragment))]


def signature_matches(token: str, url: str, pairs: list[tuple[str, str]], signature: str) -> bool:
    """Whether ``signature`` is Twilio's for this request, compared in constant time."""
    given = signature.encode()
    ok = False
    for candidate in _url_variants(url):
        # Check every variant so the time taken does not say which one matched.
        ok |= hmac.compare_digest(compute_signature(token, candidate, pairs).encode(), given)
    return ok


def find_header(headers: Union[Mapping[str, str], None], name: str) -> Union[str, None]:
    """``headers[name]`` looked up without regard to case, or None. Works for dicts and multidicts."""
    if not headers:
        return None
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None
