"""The one error hierarchy of doeff: every error doeff raises derives from `DoeffError`.

    DoeffError
    ├── ProgramError                 a program did something the machine cannot run
    │   ├── UsageError               doeff itself was misused; catch and safe never stop these
    │   │   ├── InvalidYieldError    yielded a value that is neither an Effect nor a program
    │   │   ├── NotAProgramError     ran or started something that is not a program or effect
    │   │   ├── InvalidEffectError   built an effect from arguments it cannot use
    │   │   ├── UnhandledEffectError yielded an effect no handler answers
    │   │   ├── InvalidHandlerError  a handlers= table doeff cannot use
    │   │   ├── ForeignLoopError     awaited a future of the loop run_sync is blocking
    │   │   ├── LimitConflictError   a named limit used with other parameters than its first use
    │   │   └── DeadlockError        every task waits, and nothing can wake any of them
    │   ├── EnvKeyError              asked the environment for a key it does not have
    │   └── CancellationError        the run was cancelled (e.g. run_workflow(...).cancel())
    ├── InvalidOptionError           an option doeff does not accept (also a ValueError)
    ├── WaitTimeoutError             a wait for a run ended before the run (also a TimeoutError)
    ├── SerdeError                   object <-> bytes
    │   ├── EncodeError              a value outside the codec's domain
    │   ├── DecodeError              bytes that are not a valid record for any known codec
    │   ├── UnknownCodecError        no codec is registered under a tag (also a LookupError)
    │   └── RegistrationError        a type or codec that cannot be registered (also a TypeError)
    └── StorageError                 where bytes live
        ├── InvalidKeyError          a key that is not a valid Unicode str (also a TypeError)
        ├── InvalidValueError        a KVStore value that is not bytes (also a TypeError)
        ├── StoreClosedError         the store was closed
        ├── IncompatibleStoreError   not a doeff store, or written by a newer doeff
        ├── StorageFullError         the disk (or map) is full
        └── StorageUnavailableError  the backend cannot be reached (connection lost, ...)

Messages say what arrived, where, and what to do about it. Where callers would naturally catch a
built-in exception (`TypeError`, `ValueError`, `KeyError`, `LookupError`) the doeff error derives
from it too, so `except TypeError` keeps working.
"""

from __future__ import annotations


class DoeffError(Exception):
    """Root of every error doeff raises."""


class ProgramError(DoeffError):
    """A program asked the machine for something it cannot do."""


class UsageError(ProgramError):
    """doeff itself was used wrongly; `catch` and `safe` let these pass, since no handler of the
    program's own can fix the program's code."""


class InvalidYieldError(UsageError, TypeError):
    """A program yielded a value that is neither an `Effect` nor a program."""


class NotAProgramError(UsageError, TypeError):
    """Something was run as a program (by a runner, `gather`, `catch`, `cached`...) that is not a
    program or an effect, e.g. an uncalled `@do` function that takes arguments."""


class InvalidEffectError(UsageError, TypeError):
    """An effect was built from arguments it cannot use: `perform`/`modify` with something not
    callable, `await_` with something not awaitable, `local` with updates that are not a
    mapping, `catch` with a handler that is not callable."""


class UnhandledEffectError(UsageError):
    """A program yielded an effect for which no handler is registered."""


class InvalidHandlerError(UsageError, TypeError, ValueError):
    """A `handlers=` table doeff cannot use: a key that is not an effect class, a handler that is
    not callable, or a built-in effect replaced without `override`."""


class EnvKeyError(ProgramError, KeyError):
    """A program asked the environment for a key it does not hold."""

    def __str__(self) -> str:
        # KeyError's str() would wrap the message in quotes.
        return str(self.args[0]) if self.args else ""


class ForeignLoopError(UsageError):
    """`run_sync` was asked to await a future bound to the event loop it is blocking."""


class CancellationError(ProgramError):
    """The run was cancelled; raised inside the program at its current `yield`.

    Named apart from `asyncio.CancelledError`, which a program awaiting coroutines may meet too.
    """


class LimitConflictError(UsageError, ValueError):
    """A named `limit` was used with parameters other than those its first use fixed, or with
    none at its first use."""


class DeadlockError(UsageError):
    """Every live task of the run waits (for another task, a limit, or itself) and nothing in
    flight can wake any of them; raised at each of those waits."""


# The name this error had before it was renamed; kept so old imports keep working.
CancelledError = CancellationError


class InvalidOptionError(DoeffError, ValueError):
    """An argument that doeff does not accept (a durability mode, a table name, a size...)."""


class WaitTimeoutError(DoeffError, TimeoutError):
    """Waiting for a run gave up after its timeout; the run itself goes on."""


class SerdeError(DoeffError):
    """Converting between objects and bytes failed."""


class EncodeError(SerdeError, TypeError):
    """A value lies outside the codec's domain; nothing was written."""


class DecodeError(SerdeError, ValueError):
    """Bytes are not a record any registered codec can read (corrupt, foreign or newer)."""


class UnknownCodecError(SerdeError, LookupError):
    """No codec is registered under the requested tag."""


class RegistrationError(SerdeError, TypeError):
    """A type or codec cannot be registered: an unsupported kind of type, a taken wire name, a
    tag that cannot go into a record header."""


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
    "CancellationError",
    "DeadlockError",
    "DecodeError",
    "DoeffError",
    "EncodeError",
    "EnvKeyError",
    "ForeignLoopError",
    "IncompatibleStoreError",
    "InvalidEffectError",
    "InvalidHandlerError",
    "InvalidKeyError",
    "InvalidOptionError",
    "InvalidValueError",
    "InvalidYieldError",
    "LimitConflictError",
    "NotAProgramError",
    "ProgramError",
    "RegistrationError",
    "SerdeError",
    "StorageError",
    "StorageFullError",
    "StorageUnavailableError",
    "StoreClosedError",
    "UnhandledEffectError",
    "UnknownCodecError",
    "UsageError",
    "WaitTimeoutError",
]
