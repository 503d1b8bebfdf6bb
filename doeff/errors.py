"""The one error hierarchy of doeff: every error doeff raises derives from `DoeffError`.

    DoeffError
    ├── ProgramError                 a program did something the machine cannot run
    │   ├── InvalidYieldError        yielded a value that is neither an Effect nor a program
    │   ├── UnhandledEffectError     yielded an effect no handler answers
    │   ├── EnvKeyError              asked the environment for a key it does not have
    │   ├── ForeignLoopError         awaited a future of the loop run_sync is blocking
    │   └── CancelledError           the run was cancelled from outside (run_workflow().cancel())
    ├── SerdeError                   object <-> bytes
    │   ├── EncodeError              a value outside the codec's domain
    │   ├── DecodeError              bytes that are not a valid record for any known codec
    │   └── UnknownCodecError        no codec is registered under a tag (also a LookupError)
    └── StorageError                 where bytes live
        ├── InvalidKeyError          a key that is not a valid Unicode str (also a TypeError)
        ├── InvalidValueError        a KVStore value that is not bytes (also a TypeError)
        ├── StoreClosedError         the store was closed
        ├── IncompatibleStoreError   not a doeff store, or written by a newer doeff
        ├── StorageFullError         the disk (or map) is full
        └── StorageUnavailableError  the backend cannot be reached (connection lost, ...)

Messages say what arrived, where, and what to do about it.
"""

from __future__ import annotations


class DoeffError(Exception):
    """Root of every error doeff raises."""


class ProgramError(DoeffError):
    """A program asked the machine for something it cannot do."""


class InvalidYieldError(ProgramError, TypeError):
    """A program yielded a value that is neither an `Effect` nor a program."""


class UnhandledEffectError(ProgramError):
    """A program yielded an effect for which no handler is registered."""


class EnvKeyError(ProgramError, KeyError):
    """A program asked the environment for a key it does not hold."""

    def __str__(self) -> str:
        # KeyError's str() would wrap the message in quotes.
        return str(self.args[0]) if self.args else ""


class ForeignLoopError(ProgramError):
    """`run_sync` was asked to await a future bound to the event loop it is blocking."""


class CancelledError(ProgramError):
    """The run was cancelled from outside; raised inside the program at its current `yield`."""


class SerdeError(DoeffError):
    """Converting between objects and bytes failed."""


class EncodeError(SerdeError, TypeError):
    """A value lies outside the codec's domain; nothing was written."""


class DecodeError(SerdeError, ValueError):
    """Bytes are not a record any registered codec can read (corrupt, foreign or newer)."""


class UnknownCodecError(SerdeError, LookupError):
    """No codec is registered under the requested tag."""


class StorageError(DoeffError):
    """A durable store failed; the message names the store and the operation."""


class InvalidKeyError(StorageError, TypeError):
    """A key is not a `str`, or is not valid Unicode (e.g. holds a lone surrogate)."""


class InvalidValueError(StorageError, TypeError):
    """A value given to a `KVStore` is not bytes (use `Durable` to store objects)."""


class StoreClosedError(StorageError):
    """An operation was attempted on a store after `close()`."""


class IncompatibleStoreError(StorageError):
    """The file or table is not a doeff store, or was written by a newer schema version."""


class StorageFullError(StorageError):
    """The disk or the store's map is full; the write was not applied."""


class StorageUnavailableError(StorageError):
    """The backend could not be reached; the operation was not applied."""


__all__ = [
    "CancelledError",
    "DecodeError",
    "DoeffError",
    "EncodeError",
    "EnvKeyError",
    "ForeignLoopError",
    "IncompatibleStoreError",
    "InvalidKeyError",
    "InvalidValueError",
    "InvalidYieldError",
    "ProgramError",
    "SerdeError",
    "StorageError",
    "StorageFullError",
    "StorageUnavailableError",
    "StoreClosedError",
    "UnhandledEffectError",
    "UnknownCodecError",
]
