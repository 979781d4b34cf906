"""Request bodies as MMS hands them to a handler, turned into typed parts.

MMS gives a handler one dict per request: each form field (multipart) or the raw
body (key ``body``, or ``data``) becomes a key, and the value is bytes, or, when
the server runs with ``decode_input_request=true``, already-decoded JSON (dict or
list) or text (str). Decoding goes through one table keyed by content type.
"""
import json
from collections import namedtuple

from .errors import BadRequest

#: Keys MMS uses for a body that was not multipart/form-data.
RAW_BODY_KEYS = ("body", "data")

Part = namedtuple("Part", "name content_type value")


def _decode_json(value):
    if isinstance(value, (dict, list)):
        return value
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", errors="replace")
    try:
        return json.loads(value)
    except ValueError as err:
        raise BadRequest("malformed JSON body: %s" % err)


def _decode_text(value):
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _passthrough(value):
    return value


#: content type (without parameters) -> decoder of the value MMS handed over.
DECODERS = {
    "application/json": _decode_json,
    "text/plain": _decode_text,
}


def media_type(content_type):
    """``"Application/JSON; charset=utf-8"`` -> ``"application/json"``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def decode_value(content_type, value):
    """Decode one part's value by its content type (bytes pass through)."""
    kind = media_type(content_type)
    decoder = DECODERS.get(kind)
    if decoder is None and kind.startswith("text/"):
        decoder = _decode_text
    if decoder is None and kind.endswith("+json"):
        decoder = _decode_json
    if decoder is None:
        # Unknown type: keep bytes as bytes; values MMS already decoded keep their form.
        decoder = _passthrough
    return decoder(value)


def content_type_of(headers, name, value):
    """The content type MMS recorded for part ``name``, or one implied by the value."""
    entry = (headers or {}).get(name)
    if isinstance(entry, dict) and entry.get("content-type"):
        return entry["content-type"]
    if isinstance(value, (dict, list)):
        return "application/json"
    if isinstance(value, str):
        return "text/plain"
    return "application/octet-stream"


def request_parts(request, headers=None):
    """All parts of one request, in the order MMS received them.

    ``headers`` is the request's header map from the MMS context (it holds each
    part's content type under the part's name). Raises BadRequest when there is
    nothing to read.
    """
    if not isinstance(request, dict) or not request:
        raise BadRequest("empty request: send an image body or multipart/form-data parts")
    parts = []
    for name, value in request.items():
        ctype = content_type_of(headers, name, value)
        parts.append(Part(name, media_type(ctype), value))
    return parts


def is_single_body(parts):
    """True for a plain (not multipart) body, which is answered unwrapped."""
    return len(parts) == 1 and parts[0].name in RAW_BODY_KEYS
