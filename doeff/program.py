"""Programs: `@do` turns a generator function into a `KleisliProgram`; calling that gives a lazy
`Program`, which does nothing until a machine runs it (or a program `yield`s it)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Generator
from types import GeneratorType
from typing import Any, Generic, ParamSpec, TypeVar, overload

T = TypeVar("T")
P = ParamSpec("P")


class Program(Generic[T]):
    """A lazy program: a function and its arguments, started afresh each time it is run."""

    __slots__ = ("args", "fn", "kwargs")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs if kwargs is not None else {}

    def start(self) -> Any:
        """Call the function: a fresh generator, or the return value of a non-generator body."""
        return self.fn(*self.args, **self.kwargs)

    def __iter__(self) -> Generator[Any, Any, T]:
        # `x = yield from prog` inlines the program into the caller's generator.
        started = self.start()
        if isinstance(started, GeneratorType):
            result: T = yield from started
            return result
        return started  # type: ignore[no-any-return]

    @property
    def name(self) -> str:
        """The program's function name, as shown in tracebacks and snapshots."""
        return getattr(self.fn, "__qualname__", None) or repr(self.fn)

    def __repr__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        text = ", ".join(parts)
        if len(text) > 60:
            text = text[:57] + "..."
        return f"<Program {self.name}({text})>"


class KleisliProgram(Generic[P, T]):
    """A `@do` function: calling it with arguments returns a `Program` that has not started."""

    def __init__(self, fn: Callable[P, Generator[Any, Any, T]] | Callable[P, T]) -> None:
        self.fn = fn
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Program[T]:
        return Program(self.fn, args, kwargs)

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        # Lets `@do` decorate methods: bind `self` like a plain function would.
        if obj is None:
            return self
        return functools.partial(self.__call__, obj)

    def __repr__(self) -> str:
        return f"<do {getattr(self.fn, '__qualname__', self.fn)!r}>"


@overload
def do(fn: Callable[P, Generator[Any, Any, T]]) -> KleisliProgram[P, T]: ...
@overload
def do(fn: Callable[P, T]) -> KleisliProgram[P, T]: ...
def do(fn: Callable[P, Any]) -> KleisliProgram[P, Any]:
    """Turn a generator function into a program factory.

    >>> @do
    ... def greet(name):
    ...     who = yield ask("greeting")
    ...     return f"{who}, {name}"
    >>> run_sync(greet("Ada"), env={"greeting": "Hello"}).value
    'Hello, Ada'
    """
    return KleisliProgram(fn)


def entry_program(program: Any) -> Any:
    """What a runner runs when given `program`: an uncalled `@do` function that needs no
    arguments is called (doeff's first API typed the argument as a `KleisliProgram`); anything
    else is run as it is (and one that needs arguments is refused by the machine, by name)."""
    if isinstance(program, KleisliProgram):
        try:
            inspect.signature(program.fn).bind()
        except (TypeError, ValueError):
            return program
        return program()
    return program
