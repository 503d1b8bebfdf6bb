"""Built-in effects as values: immutable, compared and hashed by class and fields, printed like
dataclasses, matchable by class pattern, picklable; cache keys are checked when built."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import doeff.effects as effects
from doeff import Effect
from doeff.effects import (
    Ask,
    CacheDelete,
    CacheExists,
    CacheGet,
    CachePut,
    Get,
    Perform,
    Put,
    Tell,
    ask,
    cachedelete,
    cacheexists,
    cacheget,
    cacheput,
    catch,
    finally_,
    gather,
    get,
    listen,
    local,
    modify,
    perform,
    put,
    safe,
    tell,
)
from doeff.errors import DoeffError, InvalidKeyError

BUILTIN: list[Any] = [getattr(effects, name) for name in effects.__all__
                      if name[0].isupper() and name != "Effect"]
CACHE: list[Any] = [CacheGet, CachePut, CacheDelete, CacheExists, effects.CacheFill,
                    effects.CacheLookup, effects.CacheClaim, effects.CacheStore]

hashable = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8),
                     st.tuples(st.integers(), st.text(max_size=4)))
anything = st.one_of(hashable, st.lists(st.integers(), max_size=3),
                     st.dictionaries(st.text(max_size=4), st.integers(), max_size=3))


def field_values(cls: Any, values: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[Any, ...]]:
    """One value per field of `cls`; a str for a cache effect's key."""
    parts = [st.text(max_size=8) if cls in CACHE and name == "key" else values
             for name in cls.__match_args__]
    return st.tuples(*parts)


def reference(cls: Any) -> Any:
    """A frozen dataclass with the same name and fields: what the effects must behave like."""
    return dataclasses.make_dataclass(cls.__name__, list(cls.__match_args__), frozen=True)


def test_every_builtin_effect_is_an_effect_with_its_fields_as_match_args() -> None:
    """Each built-in effect class is an `Effect` whose `__match_args__` are its fields in order."""
    assert {cls.__name__ for cls in BUILTIN} >= {
        "Perform", "Get", "Put", "Ask", "Tell", "CacheGet", "CachePut", "CacheDelete",
        "CacheExists"}
    for cls in BUILTIN:
        assert issubclass(cls, Effect)
        params = list(inspect.signature(cls).parameters)
        assert list(cls.__match_args__) == params, cls


@given(st.data())
def test_effects_compare_hash_and_print_like_frozen_dataclasses(data: st.DataObject) -> None:
    """For any field values, ==, hash and repr agree with the equivalent frozen dataclass."""
    cls = data.draw(st.sampled_from(BUILTIN))
    values = data.draw(field_values(cls, hashable))
    others = data.draw(field_values(cls, hashable))
    ref = reference(cls)
    eff, twin, other = cls(*values), cls(*values), cls(*others)
    assert repr(eff) == repr(ref(*values))
    assert eff == twin and not eff != twin
    assert hash(eff) == hash(twin)
    assert (eff == other) == (ref(*values) == ref(*others))


@given(st.data())
def test_effects_with_unhashable_fields_still_compare_and_print(data: st.DataObject) -> None:
    """Fields holding lists or dicts still give == and repr; hashing fails where a dataclass's
    would."""
    cls = data.draw(st.sampled_from(BUILTIN))
    values = data.draw(field_values(cls, anything))
    ref = reference(cls)
    eff = cls(*values)
    assert eff == cls(*values)
    assert repr(eff) == repr(ref(*values))
    try:
        hash(ref(*values))
    except TypeError:
        with pytest.raises(TypeError):
            hash(eff)
    else:
        assert hash(eff) == hash(cls(*values))


def same(a: object, b: object) -> bool:
    """`a == b`, for values whose static types say they could never be equal."""
    return a == b


def test_effects_of_different_classes_with_the_same_fields_differ() -> None:
    """Equality needs the same class: Ask('k') is not Tell('k'), and no effect equals a tuple."""
    assert not same(Ask("k"), Tell("k"))
    assert not same(CacheGet("k"), CacheExists("k")) and not same(CacheGet("k"), CacheDelete("k"))
    assert not same(Get("k", None), ("k", None))
    assert len({Ask("k"), Tell("k"), Ask("k")}) == 2


def test_perform_prints_like_the_dataclass_it_replaced() -> None:
    """perform(f) prints as `Perform(fn=..., args=(), kwargs={})`, as a frozen dataclass did."""
    assert repr(perform(int)) == "Perform(fn=<class 'int'>, args=(), kwargs={})"
    assert repr(perform(len, "ab", x=1)) == (
        "Perform(fn=<built-in function len>, args=('ab',), kwargs={'x': 1})")
    assert repr(CacheGet("k")) == "CacheGet(key='k')"


@given(st.data())
def test_no_field_of_any_effect_can_be_set_or_deleted(data: st.DataObject) -> None:
    """Assigning or deleting any field, or adding an attribute, raises and changes nothing."""
    cls = data.draw(st.sampled_from(BUILTIN))
    values = data.draw(field_values(cls, hashable))
    eff = cls(*values)
    for name in [*cls.__match_args__, "extra"]:
        with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign"):
            setattr(eff, name, "changed")
        with pytest.raises(dataclasses.FrozenInstanceError, match="cannot delete"):
            delattr(eff, name)
    assert eff == cls(*values)


def test_lowercase_constructors_build_the_public_classes() -> None:
    """Each lowercase constructor builds an instance of exactly its public class and fields."""

    def fn(old: Any = 0) -> int:
        return 1

    built = [
        (perform(fn, 1, a=2), Perform(fn, (1,), {"a": 2})),
        (get("k"), Get("k", None)),
        (put("k", 1), Put("k", 1)),
        (ask("k"), Ask("k")),
        (tell("m"), Tell("m")),
        (cacheget("k"), CacheGet("k")),
        (cacheput("k", 1), CachePut("k", 1)),
        (cachedelete("k"), CacheDelete("k")),
        (cacheexists("k"), CacheExists("k")),
        (modify("k", fn), effects.Modify("k", fn, None)),
        (local({"a": 1}, ask("a")), effects.Local({"a": 1}, Ask("a"))),
        (listen(tell(1)), effects.Listen(Tell(1))),
        (catch(ask("a"), repr), effects.Catch(Ask("a"), repr)),
        (finally_(ask("a"), tell(1)), effects.Finally(Ask("a"), Tell(1))),
        (safe(ask("a")), effects.Safe(Ask("a"))),
        (gather(ask("a"), ask("b")), effects.Gather((Ask("a"), Ask("b")))),
    ]
    for made, expected in built:
        assert type(made) is type(expected) and made == expected


def test_builtin_effects_are_frozen_dataclasses() -> None:
    """As the feature request declares them: fields(), replace() and asdict() work, and a
    replaced cache key is checked again."""
    eff = cacheput("k", 1)
    assert dataclasses.is_dataclass(eff)
    assert [f.name for f in dataclasses.fields(eff)] == ["key", "value"]
    assert dataclasses.replace(eff, value=2) == CachePut("k", 2)
    assert dataclasses.asdict(get("k")) == {"key": "k", "default": None}
    not_a_str: Any = 3
    with pytest.raises(InvalidKeyError):
        dataclasses.replace(eff, key=not_a_str)


def test_constructor_signatures_are_unchanged() -> None:
    """The classes take their fields (with dataclass defaults); the lowercase ones their own."""
    assert str(inspect.signature(Perform)) == "(fn, args=(), kwargs=<factory>)"
    assert str(inspect.signature(Get)) == "(key, default=None)"
    assert str(inspect.signature(perform)).startswith("(fn: ")
    assert [p.kind for p in inspect.signature(perform).parameters.values()] == [
        inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.VAR_POSITIONAL,
        inspect.Parameter.VAR_KEYWORD]
    assert list(inspect.signature(get).parameters) == ["key", "default"]
    assert list(inspect.signature(cacheput).parameters) == ["key", "value"]


def test_each_perform_gets_its_own_kwargs_dict() -> None:
    """Perform's default kwargs is a fresh dict per effect, never one shared between them."""
    first, second = Perform(int), Perform(int)
    assert first.kwargs == {} and first.kwargs is not second.kwargs


def handle_cache_effect(effect: Any, store: dict[str, Any]) -> Any:
    """The interpreter sketch of the original feature request, dispatching by class pattern."""
    match effect:
        case CacheGet(key):
            return store.get(key)
        case CachePut(key, value):
            store[key] = value
            return None
        case CacheDelete(key):
            return store.pop(key, None) is not None
        case CacheExists(key):
            return key in store
        case _:
            raise LookupError(effect)


def test_cache_effects_dispatch_by_class_pattern() -> None:
    """`match` with positional class patterns binds each cache effect's fields in order."""
    store: dict[str, Any] = {}
    assert handle_cache_effect(cacheput("k", [1]), store) is None
    assert handle_cache_effect(cacheget("k"), store) == [1]
    assert handle_cache_effect(cacheexists("k"), store) is True
    assert handle_cache_effect(cachedelete("k"), store) is True
    assert handle_cache_effect(cacheexists("k"), store) is False
    match perform(len, "ab", x=1):
        case Perform(fn, args, kwargs):
            assert (fn, args, kwargs) == (len, ("ab",), {"x": 1})
        case _:
            pytest.fail("Perform did not match its class pattern")
    match get("k"):
        case Get(key=key, default=default):
            assert (key, default) == ("k", None)
        case _:
            pytest.fail("Get did not match a keyword pattern")


@given(st.one_of(st.integers(), st.none(), st.binary(max_size=4), st.floats(allow_nan=False),
                 st.tuples(st.text(max_size=3))))
def test_cache_effects_refuse_a_key_that_is_not_a_str(key: Any) -> None:
    """Every cache effect, by class or lowercase constructor, refuses a non-str key when built."""
    builds: list[tuple[str, Callable[[], object]]] = [
        ("cacheget", lambda: CacheGet(key)), ("cacheget", lambda: cacheget(key)),
        ("cacheput", lambda: CachePut(key, 1)), ("cacheput", lambda: cacheput(key, 1)),
        ("cachedelete", lambda: CacheDelete(key)), ("cachedelete", lambda: cachedelete(key)),
        ("cacheexists", lambda: CacheExists(key)), ("cacheexists", lambda: cacheexists(key)),
    ]
    for name, build in builds:
        with pytest.raises(InvalidKeyError, match=f"^{name} key must be a str") as caught:
            build()
        assert isinstance(caught.value, DoeffError) and isinstance(caught.value, TypeError)


def test_cache_effects_accept_str_subclass_keys() -> None:
    """A key of a str subclass is a str, and is accepted."""

    class Name(str):
        pass

    assert cacheget(Name("k")).key == "k"


@given(st.data())
def test_effects_survive_pickle_and_copy(data: st.DataObject) -> None:
    """Pickling, copy and deepcopy give an equal effect of the same class."""
    cls = data.draw(st.sampled_from([c for c in BUILTIN if c not in (effects.Await,)]))
    values = data.draw(field_values(cls, anything))
    eff = cls(*values)
    for clone in (pickle.loads(pickle.dumps(eff)), copy.copy(eff), copy.deepcopy(eff)):
        assert type(clone) is cls and clone == eff


class LoudGet(Get):
    """A plain subclass of a built-in effect."""


@dataclasses.dataclass(frozen=True)
class TimedGet(Get):
    """A dataclass subclass of a built-in effect, with a field of its own."""

    timeout: float = 1.0


class NamedCacheGet(CacheGet):
    """A subclass of a cache effect."""


def test_subclasses_of_builtin_effects_are_built_as_dataclasses() -> None:
    """Plain and dataclass subclasses build, compare, print, pickle and check keys as before."""
    loud = LoudGet("k")
    assert (loud.key, loud.default) == ("k", None) and type(loud) is LoudGet
    assert repr(loud) == "LoudGet(key='k', default=None)" and loud == LoudGet("k")
    timed = TimedGet("k", 0, 2.5)
    assert (timed.key, timed.default, timed.timeout) == ("k", 0, 2.5)
    assert repr(timed) == "TimedGet(key='k', default=0, timeout=2.5)"
    for eff in (loud, timed):
        assert pickle.loads(pickle.dumps(eff)) == eff
        with pytest.raises(dataclasses.FrozenInstanceError):
            eff.key = "other"  # type: ignore[misc]
    not_a_str: Any = 3
    with pytest.raises(InvalidKeyError, match=r"^namedcacheget key must be a str"):
        NamedCacheGet(not_a_str)


@dataclasses.dataclass(frozen=True)
class Fetch(Effect):
    url: str


def test_user_dataclass_effects_keep_dataclass_behaviour() -> None:
    """A user's frozen dataclass subclassing Effect is compared, printed and frozen as usual."""
    assert Fetch("a") == Fetch("a") and Fetch("a") != Fetch("b")
    assert repr(Fetch("a")) == "Fetch(url='a')"
    with pytest.raises(dataclasses.FrozenInstanceError):
        Fetch("a").url = "b"  # type: ignore[misc]
