"""Signed records: HMAC-SHA256 under named keys, so a store tells its own records from planted ones.

A key's id is the first 8 hex digits of SHA-256 over a fixed label and the key. Every signature
names the id of the key that made it, so a reader holding several keys (while rotating) knows
which one to check with, and an error can say which key a record needs without revealing it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence

from doeff.errors import InvalidOptionError

MAC_SIZE = 32  # bytes of an HMAC-SHA256
KEY_ID_SIZE = 8  # hex digits of a key id
MIN_KEY_SIZE = 16  # shorter secrets are too easy to guess offline from one signed record
_BLOCK = 64  # SHA-256's block size, which HMAC pads the key to
_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))
_NEW_KEY = 'python -c "import secrets; print(secrets.token_hex(32))"'


def key_id(secret: bytes) -> str:
    """The public name of a signing key: 8 hex digits that do not reveal the key."""
    return hashlib.sha256(b"doeff signing key id\0" + secret).hexdigest()[:KEY_ID_SIZE]


class Hmac:
    """HMAC-SHA256 (RFC 2104) of one key, with the padded key hashed once, up front.

    `hmac.digest` derives the padded key again on every call, which makes it about three times
    slower than this for a small record, where signing would otherwise cost more than encoding.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, secret: bytes) -> None:
        if len(secret) > _BLOCK:
            secret = hashlib.sha256(secret).digest()
        padded = secret.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(padded.translate(_IPAD))
        self._outer = hashlib.sha256(padded.translate(_OPAD))

    def after(self, prefix: bytes) -> Hmac:
        """This HMAC with `prefix` already absorbed: `after(p).digest(x) == digest(p, x)`."""
        out = Hmac.__new__(Hmac)
        out._inner, out._outer = self._inner.copy(), self._outer
        out._inner.update(prefix)
        return out

    def pair(self, first: bytes, second: bytes) -> bytes:
        """`digest(first, second)` without the loop: the per-record call of a signed store."""
        inner = self._inner.copy()
        inner.update(first)
        inner.update(second)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def digest(self, *parts: bytes) -> bytes:
        """The HMAC of the concatenation of `parts`."""
        inner = self._inner.copy()
        for part in parts:
            inner.update(part)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


def _check_secret(secret: object, what: str) -> bytes:
    if not isinstance(secret, bytes | bytearray):
        raise InvalidOptionError(
            f"{what} must be bytes, got {type(secret).__name__}; make one with {_NEW_KEY} and "
            "pass bytes.fromhex(...) of it"
        )
    if len(secret) < MIN_KEY_SIZE:
        raise InvalidOptionError(
            f"{what} is {len(secret)} bytes; a signing key needs at least {MIN_KEY_SIZE} random "
            f"bytes (32 recommended): make one with {_NEW_KEY}"
        )
    return bytes(secret)


class Signer:
    """The keys of a signed store: the first one signs, every one verifies (for key rotation).

        signer = Signer([new_key, old_key])   # records signed with either key verify
    """

    __slots__ = ("_macs", "key_id", "key_ids")

    def __init__(self, keys: bytes | Sequence[bytes]) -> None:
        secrets = [keys] if isinstance(keys, bytes | bytearray) else list(keys)
        if not secrets:
            raise InvalidOptionError("signing_key is an empty list; give at least one key")
        self._macs: dict[str, Hmac] = {}
        for i, secret in enumerate(secrets):
            checked = _check_secret(secret, f"signing key #{i}")
            kid = key_id(checked)
            if kid in self._macs:
                raise InvalidOptionError(f"signing key #{i} (id {kid}) is listed twice")
            self._macs[kid] = Hmac(checked)
        self.key_ids = tuple(self._macs)
        self.key_id = self.key_ids[0]

    def __repr__(self) -> str:
        return f"Signer(key ids {', '.join(self.key_ids)})"  # never the keys themselves

    def prepared(self, prefix: bytes) -> Hmac:
        """The first key's HMAC with `prefix` absorbed (a fixed header, signed once per record)."""
        return self._macs[self.key_id].after(prefix)

    def sign(self, *parts: bytes) -> bytes:
        """The signature of the concatenation of `parts`, with the first key."""
        return self._macs[self.key_id].digest(*parts)

    def problem(self, kid: str, mac: bytes, *parts: bytes) -> str | None:
        """None if `mac` is the signature of `parts` under key `kid`, else what is wrong."""
        signer = self._macs.get(kid)
        if signer is None:
            return (f"it is signed with key id {kid}, which this reader does not hold "
                    f"(it holds {', '.join(self.key_ids)}); add that key to signing_key=[...] "
                    "if you still trust it")
        if not hmac.compare_digest(signer.digest(*parts), mac):
            return (f"its signature (key id {kid}) does not match: the record was changed "
                    "after it was signed, or signed for another key")
        return None


def read_key_file(path: str | os.PathLike[str]) -> list[bytes]:
    """The keys in a key file: one hex-encoded key per line, the signing key first.

    Blank lines and lines starting with `#` are skipped. Errors never quote the file's content.
    """
    try:
        with open(path, encoding="ascii") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidOptionError(f"cannot read the key file {os.fspath(path)!r}: {exc}") from None
    keys = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            keys.append(bytes.fromhex(text))
        except ValueError:
            raise InvalidOptionError(
                f"{os.fspath(path)!r} line {number} is not a hex-encoded key; write one key per "
                f"line, e.g. made with {_NEW_KEY}"
            ) from None
    if not keys:
        raise InvalidOptionError(f"the key file {os.fspath(path)!r} holds no key")
    for number, key in enumerate(keys):
        _check_secret(key, f"key #{number} of {os.fspath(path)!r}")
    return keys
