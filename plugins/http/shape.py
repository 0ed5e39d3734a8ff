"""The request body's shape: templates compiled once into builders, and dotted paths into getters.

A shape is a TOML table whose values are copied into the JSON body. A string
value may name fields of the send in braces (``str.format`` syntax, ``{{``
and ``}}`` for literal braces); anything else is copied literally::

    [providers.http.options.item]
    id = "{id}"                         # the send id, as is
    to = "{to}"
    text = "{body}"
    from = "{sender}"                   # the batch's sender, else the `sender` option
    kind = "sms"                        # a literal
    note = "for {recipient} on {channel}"  # interpolated into one string
    meta = { subject = "{metadata.subject}", campaign = "{metadata.ids.campaign}" }

A value that is a single template (``"{metadata.subject}"``) keeps the
field's JSON type (a metadata number stays a number); one with other text
around it is a string, with missing fields as "". A single-template field
that is missing (no such metadata key, no sender) leaves its key out of the
object (``null`` inside a list), so an API never sees ``"subject": null``.

Fields of a send: ``id``, ``recipient``, ``channel``, ``to``, ``body``,
``sender``, ``origin``, ``origin_id``, ``carrier``, ``tags``, ``metadata``
and ``metadata.KEY[.KEY...]``. The envelope (fields around the item list)
may use only the batch-level ``channel`` and ``sender``.

Runtime complexity: building an item is O(number of fields in the shape),
one small function call per field; nothing is parsed per send.
"""

from __future__ import annotations

import string
from typing import Any, Callable, Union

__all__ = ["BATCH_FIELDS", "MISSING", "SEND_FIELDS", "Builder", "compile_shape", "getter", "split_path"]


class _Missing:
    """The value of a field the send does not have (left out of the JSON object)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()

#: A compiled shape: ``(send, sender) -> JSON value``; ``send`` is None for the envelope.
Builder = Callable[[Any, str], Any]

#: Template fields read from the send (``metadata.*`` besides).
SEND_FIELDS = frozenset({"id", "recipient", "channel", "to", "body", "sender", "origin", "origin_id",
                         "carrier", "tags", "metadata"})
#: Template fields the envelope may use: the batch's, shared by every send.
BATCH_FIELDS = frozenset({"channel", "sender"})

_formatter = string.Formatter()


def split_path(path: str) -> tuple[str, ...]:
    """``"a.b.c"`` as ``("a", "b", "c")``; ``""`` is the empty path (the value itself)."""
    return tuple(path.split(".")) if path else ()


def getter(path: str) -> Callable[[Any], Any]:
    """A function reading the dotted ``path`` from decoded JSON; None when any step is absent.

    A one-key path is one ``dict.get``; a deeper one checks each step is an object.
    """
    keys = split_path(path)
    if not keys:
        return lambda doc: doc
    if len(keys) == 1:
        key = keys[0]
        return lambda doc: doc.get(key) if type(doc) is dict else None

    def deep(doc: Any) -> Any:
        for key in keys:
            if type(doc) is not dict:
                return None
            doc = doc.get(key)
        return doc

    return deep


def _field(name: str, batch: bool, where: str) -> Builder:
    """The builder of one ``{name}``; MISSING when the send lacks it."""
    if batch and name not in BATCH_FIELDS:
        raise ValueError(f"{where}: the envelope can use only {{channel}} and {{sender}}, not {{{name}}}")
    if name == "sender":
        return lambda s, sender: sender if sender else MISSING
    if batch and name == "channel":
        return lambda s, sender: s  # the envelope is built with the channel in place of a send
    if name.startswith("metadata."):
        keys = tuple(name.split(".")[1:])
        if not all(keys):
            raise ValueError(f"{where}: {{{name}}} has an empty key")

        def meta(s: Any, sender: str) -> Any:
            value = s.metadata
            for key in keys:
                if type(value) is not dict:
                    return MISSING
                value = value.get(key, MISSING)
            return value

        return meta
    if name not in SEND_FIELDS:
        known = ", ".join("{%s}" % f for f in sorted(SEND_FIELDS | {"metadata.KEY"}))
        raise ValueError(f"{where}: unknown template field {{{name}}} (known: {known})")
    if name == "origin":
        # An ``Origin`` once the engine has checked the send; a plain string when built by hand.
        return lambda s, sender: getattr(s.origin, "value", s.origin)
    if name == "tags":
        return lambda s, sender: list(s.tags)
    if name in ("carrier", "metadata"):
        return lambda s, sender: MISSING if getattr(s, name) is None else getattr(s, name)
    if name == "origin_id":
        return lambda s, sender: s.origin_id or MISSING
    # id, recipient, channel, to, body: always present strings.
    return lambda s, sender: getattr(s, name)


def _string(value: str, batch: bool, where: str) -> Union[Builder, str]:
    """A template string's builder, or the literal string when it names no field."""
    try:
        parts = list(_formatter.parse(value))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc} in template {value!r} (write {{{{ and }}}} for literal braces)") from None
    literal = "".join(text for text, _, _, _ in parts)
    names = [name for _, name, _, _ in parts if name is not None]
    if not names:
        return literal
    for _, name, spec, conv in parts:
        if name is not None and (spec or conv):
            raise ValueError(f"{where}: {{{name}}} takes no format spec or conversion in {value!r}")
        if name == "":
            raise ValueError(f"{where}: empty {{}} in template {value!r}; name a field such as {{to}}")
    if len(parts) == 1 and not parts[0][0]:
        return _field(names[0], batch, where)
    pieces: list[Union[str, Builder]] = []
    for text, name, _, _ in parts:
        if text:
            pieces.append(text)
        if name is not None:
            pieces.append(_field(name, batch, where))

    def interpolate(s: Any, sender: str) -> str:
        out = []
        for p in pieces:
            if type(p) is str:
                out.append(p)
            else:
                v = p(s, sender)  # type: ignore[operator]
                out.append("" if v is MISSING or v is None else str(v))
        return "".join(out)

    return interpolate


def compile_shape(shape: Any, where: str, batch: bool = False) -> Builder:
    """Compile a shape (table, list, template string or literal) into a builder; errors name ``where``.

    ``batch=True`` compiles an envelope: its builder is called as
    ``build(channel, sender)``.
    """
    node = _compile(shape, where, batch)
    if callable(node):
        return node
    return lambda s, sender: node


def _compile(shape: Any, where: str, batch: bool) -> Any:
    """A builder, or the constant value when nothing in ``shape`` depends on the send."""
    if isinstance(shape, str):
        return _string(shape, batch, where)
    if isinstance(shape, dict):
        const: dict[str, Any] = {}
        fields: list[tuple[str, Any, bool]] = []
        for key, value in shape.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: keys must be strings, got {key!r}")
            node = _compile(value, f"{where}.{key}", batch)
            is_builder = callable(node)
            fields.append((key, node, is_builder))
            if not is_builder:
                const[key] = node
        if len(const) == len(fields):
            return const
        items = tuple(fields)

        def build(s: Any, sender: str) -> dict[str, Any]:
            out = {}
            for key, node, is_builder in items:
                if is_builder:
                    node = node(s, sender)
                    if node is MISSING:
                        continue
                out[key] = node
            return out

        return build
    if isinstance(shape, list):
        nodes = [_compile(v, f"{where}[{i}]", batch) for i, v in enumerate(shape)]
        if not any(callable(n) for n in nodes):
            return nodes

        def build_list(s: Any, sender: str) -> list[Any]:
            out = []
            for n in nodes:
                v = n(s, sender) if callable(n) else n
                out.append(None if v is MISSING else v)
            return out

        return build_list
    if shape is None or isinstance(shape, (bool, int, float)):
        return shape
    raise ValueError(f"{where}: cannot put a {type(shape).__name__} in a JSON body")
