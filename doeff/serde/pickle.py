"""`PickleCodec`: anything the standard `pickle` can write. Never load pickles you do not trust:
unpickling can run any code the bytes name."""

from __future__ import annotations

import pickle

from doeff.errors import DecodeError, EncodeError


class PickleCodec:
    """The standard library's pickle at a fixed protocol (default: the highest available).

        PickleCodec().decode(PickleCodec().encode({"a": (1, 2)}))  # {'a': (1, 2)}
    """

    tag = "pickle"

    def __init__(self, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
        self.protocol = protocol

    def __repr__(self) -> str:
        return f"{type(self).__name__}(protocol={self.protocol})"

    def encode(self, obj: object) -> bytes:
        """`obj` pickled, or `EncodeError` naming its type and pickle's reason."""
        try:
            return self._dumps(obj)
        except Exception as exc:
            raise EncodeError(
                f"{self.tag} cannot encode a value of type "
                f"{type(obj).__module__}.{type(obj).__qualname__}: {exc}"
            ) from exc

    def decode(self, data: bytes) -> object:
        """The unpickled value; any failure (truncated, corrupt, missing class) is `DecodeError`."""
        try:
            return pickle.loads(data)
        except Exception as exc:
            raise DecodeError(f"{self.tag} cannot decode {len(data)} bytes: {exc!r}") from exc

    def _dumps(self, obj: object) -> bytes:
        return pickle.dumps(obj, protocol=self.protocol)
