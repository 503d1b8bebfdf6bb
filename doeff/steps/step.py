"""`@step`: a function whose calls are durable steps, keyed by what they compute.

    @step
    def fetch(url, limit=10): ...          # a plain function: run with perform

    @step(version=2, ttl=3600, retry=Retry(attempts=3), timeout=30, claim=True)
    async def summarise(doc): ...          # an async def: run with await_

    @step(code=True)
    @do
    def pipeline(day): ...                 # a @do program: run as a sub-program

Calling a step returns a program that answers the stored result, or computes it, stores it and
answers it. Its key is `step:NAME@vVERSION[#CODE]:DIGEST`: the step's name (`module.qualname`;
the qualname alone for a function of the script being run), its version, its code fingerprint
with `code=True`, and 32 hex digits of SHA-256 over the canonical encoding of its arguments
bound to the signature with defaults applied (`fetch(u)` and `fetch(url=u, limit=10)` share a
key). See docs/steps.md.
"""

from __future__ import annotations

import functools
import inspect
import json
import operator
import re
import types
from collections.abc import Callable, Iterable, Sequence
from typing import Any, overload

from doeff.effects.base import Effect, fast_constructor
from doeff.effects.cache import FillOptions, fill
from doeff.effects.io import Perform, await_, perform
from doeff.errors import InvalidOptionError, StepKeyError
from doeff.program import KleisliProgram, Program
from doeff.serde.envelope import EncodedInfo
from doeff.steps.code import fingerprint
from doeff.steps.explain import Recorded
from doeff.steps.isolate import run_isolated
from doeff.steps.keys import ARG_DIGEST_HEX, DIGEST_HEX, digest, encode_arguments

_NAME = re.compile(r"[^\s:@#]+")
_VERSION = re.compile(r"[A-Za-z0-9._-]{1,64}")
_ISOLATE = (None, "process")
_SHOWN = 60  # characters of an argument's repr shown in messages
_perform = fast_constructor(Perform)


def _await_fresh(fn: Callable[..., Any], args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> Any:
    # The coroutine is made when the program starts: a retried attempt awaits a new one.
    return (yield await_(fn(*args, **kwargs)))


class _Binder:
    """Binds a call's arguments to the step's signature, defaults applied, sorted by name."""

    __slots__ = ("in_order", "names", "order", "params", "signature", "simple", "sorted_names",
                 "take")

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.signature = inspect.signature(fn)
        params = list(self.signature.parameters.values())
        self.names = [p.name for p in params]
        # The common signature (named parameters only) called with every argument in place
        # needs no inspect.Signature.bind.
        self.simple = all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params)
        self.order = sorted(range(len(params)), key=self.names.__getitem__)
        self.sorted_names = [self.names[i] for i in self.order]
        self.in_order = self.order == list(range(len(params)))  # declared in name order
        # The arguments in name order, in one C call (in order already when there is one).
        self.take = operator.itemgetter(*self.order) if not self.in_order else None
        bare = [p.replace(annotation=p.empty, default=p.empty) for p in params]
        plain = self.signature.replace(parameters=bare, return_annotation=inspect.Signature.empty)
        self.params = str(plain)[1:-1]  # "url, limit, *, fmt", for the key=lambda it suggests

    def bind(self, where: str, args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> tuple[list[str], Sequence[Any]]:
        """The names, sorted, and their values, by the signature (`Step._encoded` takes the
        common call, every argument given in place to a `simple` signature, without it)."""
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise StepKeyError(f"{where}: {exc} (the arguments do not fit the step's "
                               f"signature {self.signature})") from None
        bound.apply_defaults()
        items = sorted(bound.arguments.items())
        return [k for k, _ in items], [v for _, v in items]


def _quoted(name: str) -> str:
    """An argument name as a JSON string (ASCII), made once per name."""
    quoted = _QUOTED.get(name)
    if quoted is None:
        quoted = f'"{name}"' if name.isidentifier() and name.isascii() else json.dumps(name)
        if len(_QUOTED) < 10_000:  # **kwargs may bring any names: the table stays small
            _QUOTED[name] = quoted
    return quoted


_QUOTED: dict[str, str] = {}


class StepCall:
    """One call of a step: its key, and what the machinery needs on a miss (the computation,
    the record's summary, a description for messages)."""

    __slots__ = ("args", "key", "kwargs", "names", "parts", "step", "values")

    def __init__(self, step: Step, key: str, names: list[str], parts: list[bytes],
                 values: Sequence[Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.step = step
        self.key = key
        self.names = names
        self.parts = parts
        self.values = values
        self.args = args
        self.kwargs = kwargs

    def __call__(self) -> Program[Any] | Effect:
        """The computation of this call (made anew for each attempt)."""
        computation: Program[Any] | Effect = self.step._computation(self.args, self.kwargs)
        return computation

    @property
    def what(self) -> str:
        """The call as messages show it."""
        return self.shown()

    def shown(self) -> str:
        """`name(arg=repr, ...)`, each repr cut short."""
        shown = []
        for name, value in zip(self.names, self.values, strict=True):
            text = repr(value)
            shown.append(f"{name}={text[:_SHOWN - 3] + '...' if len(text) > _SHOWN else text}")
        return f"{self.step.name}({', '.join(shown)})"

    def info(self) -> EncodedInfo:
        """The summary a record of this call carries in its header (no argument values), with
        its JSON text made here from the step's prepared parts."""
        step = self.step
        parts = self.parts
        if len(parts) == 1:
            # One part: its digest is the key's own (the same SHA-256 over the same bytes).
            name = self.names[0]
            value = self.key[-DIGEST_HEX:-DIGEST_HEX + ARG_DIGEST_HEX]
            digests = {name: value}
            text = f'{{"args":{{{_quoted(name)}:"{value}"}},{step._info_tail}'
        else:
            digests = {}
            pieces = []
            for name, part in zip(self.names, parts, strict=True):
                digests[name] = value = digest(part, ARG_DIGEST_HEX)
                pieces.append(f'{_quoted(name)}:"{value}"')
            text = '{"args":{' + ",".join(pieces) + "}," + step._info_tail
        made = EncodedInfo(args=digests, **step._info_fields)
        made.json = text.encode("ascii")
        return made

    def recorded(self) -> Recorded:
        """This call as a record of it would be described (for explaining a miss)."""
        return Recorded(self.key, self.info())


def _named(fn: Callable[..., Any], qualname: str) -> Callable[..., Any]:
    """A copy of the function `fn` under another `__qualname__`: a step's calls are plain
    `Program`s of `fill` named `step NAME` in snapshots and tracebacks (a `Program` subclass
    would take the machine's slower path for unknown yields)."""
    assert isinstance(fn, types.FunctionType)
    copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__,
                              fn.__closure__)
    copy.__kwdefaults__ = fn.__kwdefaults__
    copy.__module__ = fn.__module__
    copy.__doc__ = fn.__doc__
    copy.__qualname__ = qualname
    return copy


class Step(KleisliProgram[..., Any]):
    """A function made a durable step by `@step` (see the module docstring)."""

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None,
                 version: int | str = 1, key: Callable[..., Any] | None = None,
                 code: bool | Iterable[Callable[..., Any]] = False, ttl: object = None,
                 retry: object = None, timeout: object = None, claim: object = False,
                 isolate: str | None = None) -> None:
        target = fn.fn if isinstance(fn, KleisliProgram) else fn
        if not callable(target) or not hasattr(target, "__code__"):
            raise InvalidOptionError(
                f"@step decorates a function (def, async def or @do), got "
                f"{type(fn).__name__} {fn!r:.60}"
            )
        super().__init__(target)
        self.kind = ("async" if inspect.iscoroutinefunction(target)
                     else "program" if isinstance(fn, KleisliProgram)
                     or inspect.isgeneratorfunction(target) else "call")
        self.name = _check_name(name if name is not None else _default_name(target))
        self.version = _check_version(version)
        if key is not None and not callable(key):
            raise InvalidOptionError(f"@step(key={key!r:.60}): key must be a callable taking "
                                     f"the step's arguments, e.g. key=lambda user, day: user.id")
        self.key_fn = key
        self.code_fingerprint: str | None = None
        if code is not False:
            helpers = () if code is True else _functions(code)
            self.code_fingerprint = fingerprint(target, helpers)
        if isolate not in _ISOLATE:
            raise InvalidOptionError(f"@step(isolate={isolate!r}): give None or \"process\"")
        if isolate == "process" and self.kind == "program":
            raise InvalidOptionError(
                f"@step(isolate=\"process\") on {self.name}: a @do program needs this "
                f"process's machine and storage; isolate the plain function it performs instead"
            )
        self.isolate = isolate
        self.options = FillOptions.of(ttl, retry, None if isolate else timeout, claim)
        self.timeout = FillOptions.of(timeout=timeout).timeout
        self._binder = binder = _Binder(target)
        # How many positional arguments a call whose key needs no binding passes (-1: none):
        # every argument in place, for a signature of named parameters, with no key=.
        self._arity = len(binder.names) if key is None and binder.simple else -1
        code_part = f"#{self.code_fingerprint}" if self.code_fingerprint else ""
        self._prefix = f"step:{self.name}@v{self.version}{code_part}:"
        # The fixed part of every record's info, and its JSON after the "args" member.
        self._info_fields = {"code": self.code_fingerprint, "step": self.name,
                             "version": self.version}
        self._info_tail = json.dumps(self._info_fields, sort_keys=True,
                                     separators=(",", ":"))[1:]
        self._fill = _named(fill, f"step {self.name}")

    # -- keys -------------------------------------------------------------------------------

    def _encoded(self, args: tuple[Any, ...], kwargs: dict[str, Any]
                 ) -> tuple[str, list[str], Sequence[Any], list[bytes]]:
        """The key of a call, and what it is made of: the argument names, sorted, their values
        (or `key` and what the step's `key=` callable returns) and their canonical parts."""
        binder = self._binder
        names: list[str]
        values: Sequence[Any]
        if len(args) == self._arity and not kwargs:
            names = binder.sorted_names
            values = args if binder.take is None else binder.take(args)
        elif self.key_fn is None:
            names, values = binder.bind(self.name, args, kwargs)
        else:
            names, values = ["key"], [self.key_fn(*args, **kwargs)]
        parts = encode_arguments(names, values, self.name, binder.params)
        return self._prefix + digest(b"".join(parts)), names, values, parts

    def _call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> StepCall:
        key, names, values, parts = self._encoded(args, kwargs)
        return StepCall(self, key, names, parts, values, args, kwargs)

    def key(self, *args: Any, **kwargs: Any) -> str:
        """The key a call with these arguments is stored under."""
        return self._encoded(args, kwargs)[0]

    def __call__(self, *args: Any, **kwargs: Any) -> Program[Any]:
        key, names, values, parts = self._encoded(args, kwargs)  # `_call`, without its call
        call = StepCall(self, key, names, parts, values, args, kwargs)
        return Program(self._fill, (key, call, self.options, call))

    # -- the computation --------------------------------------------------------------------

    def _computation(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        fn = self.fn
        if self.isolate == "process":
            return perform(run_isolated, self.name, self.timeout, fn, args, kwargs)
        if self.kind == "call":
            return _perform(fn, args, kwargs)  # perform(fn, *args, **kwargs), unpacked once
        if self.kind == "async":
            return Program(_await_fresh, (fn, args, kwargs))
        return Program(fn, args, kwargs)

    def __repr__(self) -> str:
        return f"<step {self.name} v{self.version}>"


def _default_name(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", "step")
    # `__main__` names no module (any script is it): a script's function goes by its qualname
    # (name= makes keys independent of where the function is defined).
    if not module or module == "__main__":
        return str(qualname)
    return f"{module}.{qualname}"


def _check_name(name: object) -> str:
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise InvalidOptionError(
            f"@step(name={name!r:.60}): a step name is a non-empty str without spaces, ':', "
            f"'@' or '#' (they separate the parts of its keys)"
        )
    return name


def _check_version(version: object) -> str:
    text = str(version) if isinstance(version, int) and not isinstance(version, bool) \
        else version
    if not isinstance(text, str) or _VERSION.fullmatch(text) is None:
        raise InvalidOptionError(
            f"@step(version={version!r:.60}): a version is an int or a short str of letters, "
            f"digits, '.', '_' and '-' (e.g. 2 or \"2024-06\")"
        )
    return text


def _functions(code: object) -> tuple[Any, ...]:
    if isinstance(code, str | bytes) or not isinstance(code, Iterable):
        raise InvalidOptionError(
            f"@step(code={code!r:.60}): give True, or a list of the functions the step calls "
            f"whose code should count too (code=[helper, ...])"
        )
    return tuple(code)


@overload
def step(fn: Callable[..., Any], /) -> Step: ...
@overload
def step(*, name: str | None = None, version: int | str = 1,
         key: Callable[..., Any] | None = None,
         code: bool | Iterable[Callable[..., Any]] = False, ttl: object = None,
         retry: object = None, timeout: object = None, claim: object = False,
         isolate: str | None = None) -> Callable[[Callable[..., Any]], Step]: ...
def step(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Make `fn` a durable step; `@step`, `@step()` and `@step(option=...)` all work.

    Options: `version` (bump it to recompute every call), `code=True` (or a list of helper
    functions) to key on the code too, `key=callable` to key on what it returns instead of the
    arguments, `name` (default `module.qualname`), `ttl` (seconds or a timedelta),
    `retry` (a `Retry`), `timeout` (seconds), `claim` (True or a `Claim`: one worker computes,
    the others wait), `isolate="process"` (run in a child process, killed at the timeout).
    """
    if fn is None:
        return functools.partial(Step, **options)
    if options:
        raise InvalidOptionError("use @step or @step(option=...), not step(fn, option=...)")
    return Step(fn)


__all__ = ["Step", "StepCall", "step"]
