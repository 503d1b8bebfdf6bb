"""The process-wide table from codec tag to codec instance, used to open sealed records."""

from __future__ import annotations

import threading

from doeff.errors import RegistrationError, UnknownCodecError
from doeff.serde import plugins
from doeff.serde.cloudpickle import CloudpickleCodec
from doeff.serde.codec import Codec
from doeff.serde.json import JSONCodec
from doeff.serde.msgpack import MsgpackCodec
from doeff.serde.pickle import PickleCodec

_lock = threading.Lock()
_codecs: dict[str, Codec] = {}


def check_tag(tag: object) -> bytes:
    """The tag as ASCII bytes, or `RegistrationError` if it cannot go into an envelope header."""
    if type(tag) is not str or not 0 < len(tag) < 256 or not tag.isascii() or not tag.isprintable():
        raise RegistrationError(
            f"a codec tag must be 1-255 printable ASCII characters, got {tag!r}"
        )
    return tag.encode("ascii")


def register_codec(codec: Codec) -> None:
    """Make `codec` the one that opens records tagged `codec.tag` (replacing any earlier one)."""
    check_tag(getattr(codec, "tag", None))
    with _lock:
        _codecs[codec.tag] = codec


def registered_tags() -> list[str]:
    """Every registered tag, sorted."""
    return sorted(_codecs)


def get_codec(tag: str) -> Codec:
    """The codec registered under `tag`, or else the one an installed package offers under that
    name in the ``doeff.codecs`` entry-point group; `UnknownCodecError` (a `LookupError`) if
    neither exists."""
    try:
        return _codecs[tag]
    except KeyError:
        pass
    found = plugins.load(tag)
    if found is not None:
        register_codec(found)
        return found
    raise UnknownCodecError(
        f"no codec is registered under the tag {tag!r}; registered: "
        f"{', '.join(registered_tags())}; call register_codec(...) with an instance, or "
        f"install a package offering one in the entry-point group {plugins.GROUP!r}"
    )


for _default in (PickleCodec(), CloudpickleCodec(), MsgpackCodec(), JSONCodec()):
    register_codec(_default)
