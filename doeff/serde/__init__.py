"""Serialization: codecs (object <-> bytes) and the envelope that records which codec wrote a value.

    from doeff.serde import MsgpackCodec, seal, unseal

    record = seal({"rows": (1, 2)}, MsgpackCodec(), key="step:1")
    unseal(record, key="step:1")  # {'rows': (1, 2)}

See docs/serialization.md for each codec's domain, the envelope layout, registering types, the
trust policy, signing and transforms. Zstd and AesGcm import their packages only when built.
"""

from doeff.errors import (
    DecodeError,
    EncodeError,
    SerdeError,
    SignatureError,
    UnknownCodecError,
    UntrustedRecordError,
)
from doeff.serde.cloudpickle import CloudpickleCodec
from doeff.serde.codec import Codec
from doeff.serde.envelope import Envelope, EnvelopeInfo, peek, seal, unseal
from doeff.serde.json import JSONCodec
from doeff.serde.msgpack import MsgpackCodec
from doeff.serde.pickle import PickleCodec
from doeff.serde.registry import get_codec, register_codec, registered_tags
from doeff.serde.signing import Signer, read_key_file
from doeff.serde.transforms import AesGcm, Transform, Zstd
from doeff.serde.trust import PICKLE_TAGS, SAFE_TAGS, Trust
from doeff.serde.types import TypeRegistry

__all__ = [
    "PICKLE_TAGS",
    "SAFE_TAGS",
    "AesGcm",
    "CloudpickleCodec",
    "Codec",
    "DecodeError",
    "EncodeError",
    "Envelope",
    "EnvelopeInfo",
    "JSONCodec",
    "MsgpackCodec",
    "PickleCodec",
    "SerdeError",
    "SignatureError",
    "Signer",
    "Transform",
    "Trust",
    "TypeRegistry",
    "UnknownCodecError",
    "UntrustedRecordError",
    "Zstd",
    "get_codec",
    "peek",
    "read_key_file",
    "register_codec",
    "registered_tags",
    "seal",
    "unseal",
]
