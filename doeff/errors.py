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
    │   ├── CancellationError        the run was cancelled (e.g. run_workflow(...).cancel())
    │   └── StepError                a durable step could not run as asked
    │       ├── StepKeyError         an argument has no canonical encoding for the step's key
    │       │                        (a UsageError too; also a TypeError)
    │       ├── StepTimeoutError     a step ran past its timeout (also a TimeoutError)
    │       ├── StepProcessError     the child process of an isolate="process" step died
    │       ├── ReplayMissError      strict replay found no record for a step or cacheget
    │       └── StepClaimError       a claimed step's lease cannot be taken or waited for
    ├── InvalidOptionError           an option doeff does not accept (also a ValueError)
    ├── WaitTimeoutError             a wait for a run ended before the run (also a TimeoutError)
    ├── ExecutorError                the run's executor cannot take a perform call (it was shut
    │   │                            down); also a RuntimeError
    │   └── CallPickleError          a process pool cannot pickle a perform's function or
    │                                arguments (also a TypeError)
    ├── MissingExtraError            an optional package is not installed (also an ImportError)
    ├── SerdeError                   object <-> bytes
    │   ├── EncodeError              a value outside the codec's domain
    │   ├── DecodeError              bytes that are not a valid record for any known codec
    │   │   ├── UntrustedRecordError a record of a codec the reader does not trust (e.g. pickle)
    │   │   └── SignatureError       a record whose signature is missing, unknown or wrong
    │   ├── UnknownCodecError        no codec is registered under a tag (also a LookupError)
    │   └── RegistrationError        a type or codec that cannot be registered (also a TypeError)
    └── StorageError                 where bytes live
        ├── InvalidKeyError          a key that is not a valid Unicode str (also a TypeError)
        ├── InvalidValueError        a KVStore value that is not bytes (also a TypeError)
        ├── StoreClosedError         the store was closed
        ├── IncompatibleStoreError   not a doeff store, or written by a newer doeff
        ├── StorageFullError         the disk (or map) is full
        ├── StorageUnavailableError  the backend cannot be reached (connection lost, ...)
        ├── ReadOnlyStoreError       a write to a store opened read-only, or on read-only media
        ├── CorruptStoreError        the store's file is damaged: pages or keys cannot be read
        └── StoreForkedError         a forked child cannot use a store its parent was using
    RunError                         run records: steering or reading a run from outside
    ├── RunNotFoundError             no run of that id in the store (also a LookupError)
    └── RunStateError                the run cannot do that now (e.g. cancel a finished run)

Warnings: `UnsignedPickleWarning` (a `UserWarning`), a store that decodes pickle without a
signing key; `RunRecordWarning`, a run whose record could not be written (the run goes on).

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


# -- durable steps (@step, retry, timeout, claims, strict replay) ------------------------------


class StepError(ProgramError):
    """A durable step (`@step`, `cached`, `retry`, `timeout`) could not run as asked."""


class StepKeyError(StepError, UsageError, TypeError):
    """An argument of a step has no canonical encoding, so no stable key can be made from it;
    the message names the argument and suggests `key=`."""


class StepTimeoutError(StepError, TimeoutError):
    """A step (or `timeout(program, seconds)`) was still running at its deadline. An await was
    cancelled; a blocking call cannot be, so its late result is discarded."""


class StepProcessError(StepError):
    """The child process running an `isolate="process"` step ended without a result (it crashed
    or was killed by something other than its deadline)."""


class ReplayMissError(StepError):
    """Under `replay="strict"`, a step or `cacheget` found no record (missing or expired); the
    message says which records of the same step exist and which part of the key differs."""


class StepClaimError(StepError):
    """A claimed step could not take its lease or wait for the worker holding it (e.g. the store
    cannot claim, or the wait outlasted its limit)."""


class InvalidOptionError(DoeffError, ValueError):
    """An argument that doeff does not accept (a durability mode, a table name, a size...)."""


class WaitTimeoutError(DoeffError, TimeoutError):
    """Waiting for a run gave up after its timeout; the run itself goes on."""


class ExecutorError(DoeffError, RuntimeError):
    """The executor of a run (`executor=`) could not take a `perform` call: it was shut down,
    or it refused the call."""


class CallPickleError(ExecutorError, TypeError):
    """A `perform` call meant for a process pool whose function or arguments cannot be pickled
    (a lambda, a local function, a lock, an open file...)."""


class SerdeError(DoeffError):
    """Converting between objects and bytes failed."""


class EncodeError(SerdeError, TypeError):
    """A value lies outside the codec's domain; nothing was written.

    When `cached` computed the value, the error names the step (`key`) and carries the computed
    `value`, so a result that was paid for is not lost; both are None otherwise.
    """

    key: str | None = None
    value: object = None


class DecodeError(SerdeError, ValueError):
    """Bytes are not a record any registered codec can read (corrupt, foreign or newer)."""


class UnknownCodecError(SerdeError, LookupError):
    """No codec is registered under the requested tag."""


class RegistrationError(SerdeError, TypeError):
    """A type or codec cannot be registered: an unsupported kind of type, a taken wire name, a
    tag that cannot go into a record header."""


class UntrustedRecordError(DecodeError):
    """A record written by a codec the reader does not trust (pickle, cloudpickle, a user codec):
    refused from its header, before any of its payload is decoded."""


class SignatureError(DecodeError):
    """A record of a signed store whose signature is missing, made with a key the reader does not
    hold, or wrong: refused before any of its payload is decoded."""


class MissingExtraError(DoeffError, ImportError):
    """A feature needs an optional package that is not installed; the message names the extra
    (see `install_hint`)."""


def install_hint(extra: str) -> str:
    """How to install the `doeff[extra]` extra of this project, for an error message.

    Not `pip install 'doeff[...]'`: that fetches the package named doeff from the public index,
    which is a different project."""
    return f"pip install -e '/path/to/doeff[{extra}]' (this project's checkout; make venv " \
           f"installs every extra)"


class UnsignedPickleWarning(UserWarning):
    """A store that decodes pickle-family records was opened without a signing key: anyone who
    can write the store can run code in every process that reads it."""


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


# -- storage that meets hostile conditions (read-only media, damage, fork) --------------------


class ReadOnlyStoreError(StorageError):
    """A write to a store opened with `readonly=True`, or a store on read-only media opened
    without it; nothing was written."""


class CorruptStoreError(StorageError):
    """The store's file is damaged (a malformed page, a key that is not UTF-8): restore it from
    a backup, or copy what can still be read to a new store (`doeff cache migrate --into`)."""


class StoreForkedError(StorageError):
    """This process was forked while another thread was inside a store operation, so the store's
    locks here may belong to a thread that does not exist in this process; open stores after
    forking (or use the spawn/forkserver start method)."""


# -- runs seen from outside: records in the store, steered by requests (doeff.runs) ----------


class RunError(DoeffError):
    """Reading a run's record, or steering a run from another process, failed."""


class RunNotFoundError(RunError, LookupError):
    """No run of that id has a record in the store (`doeff runs ls STORE` lists them)."""


class RunStateError(RunError):
    """The run is not in a state that allows the request: cancelling a run that has ended,
    or starting a run whose id another live process is running."""


class RunRecordWarning(UserWarning):
    """A recorded run could not write its record (or read its requests); the run itself goes
    on, but other processes may see it as lost."""


def brief(exc: BaseException, limit: int = 300) -> str:
    """`repr(exc)` cut to `limit` characters, for messages that quote an underlying error: some
    libraries put the bytes they choked on in their exceptions (msgpack's ExtraData holds all of
    them), and a crafted record must not turn into a message of hundreds of megabytes."""
    text = repr(exc)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


__all__ = [
    "CallPickleError",
    "CancellationError",
    "CorruptStoreError",
    "DeadlockError",
    "DecodeError",
    "DoeffError",
    "EncodeError",
    "EnvKeyError",
    "ExecutorError",
    "ForeignLoopError",
    "IncompatibleStoreError",
    "InvalidEffectError",
    "InvalidHandlerError",
    "InvalidKeyError",
    "InvalidOptionError",
    "InvalidValueError",
    "InvalidYieldError",
    "LimitConflictError",
    "MissingExtraError",
    "NotAProgramError",
    "ProgramError",
    "ReadOnlyStoreError",
    "RegistrationError",
    "ReplayMissError",
    "RunError",
    "RunNotFoundError",
    "RunRecordWarning",
    "RunStateError",
    "SerdeError",
    "SignatureError",
    "StepClaimError",
    "StepError",
    "StepKeyError",
    "StepProcessError",
    "StepTimeoutError",
    "StorageError",
    "StorageFullError",
    "StorageUnavailableError",
    "StoreClosedError",
    "StoreForkedError",
    "UnhandledEffectError",
    "UnknownCodecError",
    "UnsignedPickleWarning",
    "UntrustedRecordError",
    "UsageError",
    "WaitTimeoutError",
]
