"""`PickleCodec`: anything the standard `pickle` can write. Never load pickles you do not trust:
unpickling can run any code the bytes name."""

from __future__ import annotations

import io
import pickle
import threading
from typing import Any

from doeff.errors import DecodeError, EncodeError, brief

# A thread keeps its pickler and buffer between calls, but not after a large value.
_KEEP_PICKLER_BELOW = 1 << 20


def check_exception(exc: BaseException, protocol: int) -> Any:
    """The reduction pickle will use for `exc`, after checking that unpickling can rebuild it.

    Unpickling an exception calls its class with ``exc.args``; a class whose ``__init__`` takes
    other arguments (``def __init__(self, key, cause): super().__init__(f"...")``) pickles
    without complaint and then fails on every read. Calling the class once here is cheap, and
    runs exactly the code every later read would run.
    """
    reduced = exc.__reduce_ex__(protocol)
    if isinstance(reduced, tuple) and len(reduced) >= 2 and callable(reduced[0]):
        build, args = reduced[0], reduced[1]
        try:
            build(*args)
        except Exception as err:
            kind = type(exc)
            raise EncodeError(
                f"{kind.__module__}.{kind.__qualname__} would be stored but could never be read "
                f"back: unpickling calls {kind.__qualname__}(*{args!r}), which raises {err!r}; "
                "pass every __init__ argument on to super().__init__(...), or define __reduce__"
            ) from None
    return reduced


class _Pickler(pickle.Pickler):
    """The standard pickler, checking exceptions as it meets them."""

    def __init__(self, file: io.BytesIO, protocol: int) -> None:
        super().__init__(file, protocol=protocol)
        self.protocol = protocol

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, BaseException):
            return check_exception(obj, self.protocol)
        return NotImplemented


class PickleCodec:
    """The standard library's pickle at a fixed protocol (default: the highest available).

        PickleCodec().decode(PickleCodec().encode({"a": (1, 2)}))  # {'a': (1, 2)}

    Writing checks each exception in the value can be rebuilt (see `check_exception`); other
    objects whose reconstruction fails (a class removed since) fail only when read.
    """

    tag = "pickle"
    reads_buffers = True  # decode() takes a memoryview as well as bytes (see the envelope)
    _pickler = _Pickler

    def __init__(self, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
        self.protocol = protocol
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(protocol={self.protocol})"

    def encode(self, obj: object) -> bytes:
        """`obj` pickled, or `EncodeError` naming its type and pickle's reason."""
        try:
            return self._dumps(obj)
        except EncodeError:
            raise
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
            raise DecodeError(f"{self.tag} cannot decode {len(data)} bytes: {brief(exc)}") from exc

    def _dumps(self, obj: object) -> bytes:
        local = self._local
        kept = getattr(local, "kept", None)
        if kept is None or local.busy:  # a pickle inside a __reduce__ of a pickle: start afresh
            buffer = io.BytesIO()
            pickler = self._pickler(buffer, protocol=self.protocol)
        else:
            pickler, buffer = kept
        local.busy = True
        try:
            pickler.dump(obj)
            data = buffer.getvalue()
        finally:
            local.busy = False
            buffer.seek(0)
            buffer.truncate()
            pickler.clear_memo()  # the memo holds every object pickled: never keep it
        if kept is None and len(data) < _KEEP_PICKLER_BELOW:
            local.kept = (pickler, buffer)
        elif kept is not None and len(data) >= _KEEP_PICKLER_BELOW:
            local.kept = None
        return data
