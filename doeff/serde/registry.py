"""The process-wide table from codec tag to codec instance, used to open sealed records."""

from __future__ import annotations

import re
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
# What a codec tag or transform name may be: short, and harmless wherever it is printed (a tag
# read from a crafted record must not be able to move a terminal's cursor). Checked on read too.
NAME = re.compile(r"[A-Za-z0-9._+-]{1,255}")
NAME_CHARS = "1-255 of A-Z a-z 0-9 . _ + -"


def check_tag(tag: object) -> bytes:
    """The tag as ASCII bytes, or `RegistrationError` if it cannot go into an envelope header."""
    if type(tag) is not str or NAME.fullmatch(tag) is None:
        raise RegistrationError(f"a codec tag must be {NAME_CHARS}, got {tag!r}")
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
