"""Serialization: codecs (object <-> bytes) and the envelope that records which codec wrote a value.

    from doeff.serde import MsgpackCodec, seal, unseal

    record = seal({"rows": (1, 2)}, MsgpackCodec())
    unseal(record)  # {'rows': (1, 2)}

See docs/serialization.md for each codec's domain, the envelope layout and registering types.
"""

from doeff.errors import DecodeError, EncodeError, SerdeError, UnknownCodecError
from doeff.serde.cloudpickle import CloudpickleCodec
from doeff.serde.codec import Codec
from doeff.serde.envelope import EnvelopeInfo, peek, seal, unseal
from doeff.serde.json import JSONCodec
from doeff.serde.msgpack import MsgpackCodec
from doeff.serde.pickle import PickleCodec
from doeff.serde.registry import get_codec, register_codec, registered_tags
from doeff.serde.types import TypeRegistry

__all__ = [
    "CloudpickleCodec",
    "Codec",
    "DecodeError",
    "EncodeError",
    "EnvelopeInfo",
    "JSONCodec",
    "MsgpackCodec",
    "PickleCodec",
    "SerdeError",
    "TypeRegistry",
    "UnknownCodecError",
    "get_codec",
    "peek",
    "register_codec",
    "registered_tags",
    "seal",
    "unseal",
]
