"""`CESKResult`: how a run ended — its value, or its error with a traceback through the programs."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from doeff.cesk.traceback import CapturedTraceback

T = TypeVar("T")


class CESKResult(Generic[T]):
    """The end of a run: `value` on success, `error` and `traceback` on failure.

    >>> @do
    ... def answer():
    ...     return (yield perform(lambda: 42))
    >>> result = run_sync(answer())
    >>> result.is_ok(), result.value
    (True, 42)
    """

    __slots__ = ("_value", "error", "log", "state", "traceback")

    def __init__(
        self,
        value: T | None,
        error: BaseException | None,
        traceback: CapturedTraceback | None,
        state: dict[Any, Any],
        log: list[Any],
    ) -> None:
        self._value = value
        self.error = error
        self.traceback = traceback
        self.state = state
        self.log = log

    def is_ok(self) -> bool:
        """True when the program returned normally."""
        return self.error is None

    def is_err(self) -> bool:
        """True when the program ended with an exception."""
        return self.error is not None

    @property
    def value(self) -> T:
        """The program's return value; raises the program's error if it failed."""
        if self.error is not None:
            raise self.error
        return self._value  # type: ignore[return-value]

    def unwrap(self) -> T:
        """Same as `value`: the return value, or raise the error."""
        return self.value

    def format_error(self) -> str:
        """The error with its traceback through the program frames, or '' when ok."""
        return str(self.traceback) if self.traceback is not None else ""

    def __repr__(self) -> str:
        if self.error is None:
            return f"CESKResult(ok: {self._value!r})"
        return f"CESKResult(err: {self.error!r})"
