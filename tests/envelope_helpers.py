"""What the trust, signing and transform tests share: a planted pickle that leaves a trace when
it runs, a codec that counts its decodes, and keys."""

from __future__ import annotations

import os
import pickle
import shlex
import zlib
from pathlib import Path
from typing import Any

from doeff.serde import MsgpackCodec, PickleCodec, seal

KEY = bytes(range(32))  # a fixed signing/encryption key, so failures reproduce
OTHER_KEY = bytes(range(100, 132))


class Exploit:
    """Unpickling this runs `touch PATH` through os.system: the payload from the issue."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {shlex.quote(str(self.path))}",))


VERSIONS = ("v1", "v2", "v3")


def planted_record(marker: Path, key: str, version: str = "v2") -> bytes:
    """The exploit as an attacker with write access would plant it under `key`: in the current
    format ("v2", bound to the key), with an expiry and info in its header ("v3"), or in the
    first one ("v1", bound to nothing)."""
    if version == "v2":
        return seal(Exploit(marker), PickleCodec(), key=key)
    if version == "v3":
        return seal(Exploit(marker), PickleCodec(), key=key, expires_at=4e9, info={"step": "f"})
    payload = pickle.dumps(Exploit(marker))
    head = b"DF\x01\x06pickle"
    return head + zlib.crc32(head + payload).to_bytes(4, "little") + payload


class CountingCodec(MsgpackCodec):
    """msgpack that counts every decode it is asked for: proof that a refused record's payload
    was never handed to a decoder."""

    tag = "counting"

    def __init__(self) -> None:
        super().__init__()
        self.decodes = 0

    def decode(self, data: bytes) -> object:
        self.decodes += 1
        return super().decode(data)
