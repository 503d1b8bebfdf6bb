"""Step keys: arguments bound to the signature, a canonical encoding stable across processes
and hash seeds (pinned by golden digests), readable key text, and clear errors."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import math
import os
import struct
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from doeff import do, step
from doeff.errors import InvalidOptionError, StepKeyError
from doeff.steps import canonical, register_key_type
from doeff.steps.explain import parse_key
from doeff.steps.keys import digest


@step
def fetch(url: str, limit: int = 10, *, fmt: str = "json") -> str:
    return url


def test_positional_keyword_and_default_arguments_share_a_key() -> None:
    """f(1), f(x=1) and f(1, default) bind to the same arguments, so they share a key."""
    assert fetch.key("u") == fetch.key(url="u") == fetch.key("u", 10) == fetch.key(
        "u", limit=10, fmt="json") == fetch.key(fmt="json", url="u")
    assert fetch.key("u", 11) != fetch.key("u")
    assert fetch.key("u", fmt="csv") != fetch.key("u")


def test_keys_name_the_step_and_its_version() -> None:
    """A key reads step:NAME@vVERSION:DIGEST (32 hex digits), readable in `doeff cache ls`."""
    parsed = parse_key(fetch.key("u"))
    assert parsed is not None
    assert (parsed.name, parsed.version, parsed.code) == (f"{__name__}.fetch", "1", None)
    assert len(parsed.digest) == 32 and int(parsed.digest, 16) >= 0

    @step(version="2024-06", name="reports.fetch")
    def other(url: str) -> str:
        return url

    assert other.key("u").startswith("step:reports.fetch@v2024-06:")


def test_values_of_different_types_get_different_keys() -> None:
    """1, 1.0 and True; a tuple and a list; 0.0 and -0.0; b"a" and "a": all distinct."""
    encoded = [canonical(v) for v in (1, 1.0, True, (1,), [1], 0.0, -0.0, b"a", "a",
                                      bytearray(b"a"), {1}, frozenset({1}), None, 1j)]
    assert len(set(encoded)) == len(encoded)


def test_dict_and_set_order_do_not_change_the_encoding() -> None:
    """Equal dicts and sets built in different orders encode identically."""
    assert canonical({"a": 1, "b": 2}) == canonical({"b": 2, "a": 1})
    assert canonical({"x", "y", "z"}) == canonical({"z", "x", "y"})
    assert canonical({3: "c", 1: "a"}) == canonical(dict(sorted({3: "c", 1: "a"}.items())))


# Golden digests: a change to the encoding changes every stored key, so it must be deliberate
# (and then bump KEY_FORMAT in doeff/steps/keys.py and these values together).
def _golden_values() -> list[Any]:
    return [
        None, True, 0, -1, 2 ** 100, 1.5, float("nan"), "héllo", b"\x00\xff",
        (1, "a"), [1, [2, 3]], {"b": 2, "a": [1.0]}, {"x", "y"}, frozenset({1, 2}),
        datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.UTC),
        datetime.date(2024, 5, 1), datetime.timedelta(days=1, seconds=3),
        decimal.Decimal("1.10"), uuid.UUID(int=7),
    ]


def test_golden_digests_are_pinned() -> None:
    """The digests of a fixed set of values match the ones recorded when the format was made:
    any change to the encoding fails here first."""
    assert canonical((1, "a", 2.0, None, {"k": b"v"})) == \
        b"(5:i1;s1:ad@\x00\x00\x00\x00\x00\x00\x00n{1:s1:kb1:v"
    assert digest(canonical(_golden_values())) == "2055f77c4ac1b5cde37b6986fe6d0fba"
    assert digest(canonical({"url": "https://example.com", "limit": 10})) == \
        "b71f4bea453eeb77120b92c90aede8a0"
    assert fetch.key("https://example.com") == \
        f"step:{__name__}.fetch@v1:f1aef75fba59347506f39be156bf8868"


_SCRIPT = textwrap.dedent("""
    import dataclasses, datetime, decimal, enum, sys, uuid
    from doeff import step
    from doeff.steps import canonical
    from doeff.steps.keys import digest

    class Color(enum.Enum):
        RED = 1

    @dataclasses.dataclass(frozen=True)
    class Query:
        table: str
        columns: frozenset

    @step(name="report")
    def report(query, tags, options, when):
        return None

    keys = [
        report.key(Query("orders", frozenset({"id", "total", "customer", "region"})),
                   {"urgent", "finance", "q2", "draft", "eu"},
                   {"b": [1.5, None], "a": {"nested": (True, b"x")}, "c": Color.RED},
                   datetime.datetime(2024, 5, 1, 12, tzinfo=datetime.timezone.utc)),
        digest(canonical({str(i): {i, -i, str(i)} for i in range(50)})),
    ]
    print("\\n".join(keys))
""")


def test_keys_are_the_same_in_processes_with_different_hash_seeds() -> None:
    """Subprocesses with different PYTHONHASHSEED (so different set and dict iteration orders)
    compute identical keys for sets, dicts, dataclasses and enums."""
    outputs = set()
    for seed in ("0", "1", "12345", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True,
                              env=env, timeout=60, check=True)
        outputs.add(done.stdout)
    assert len(outputs) == 1
    lines = outputs.pop().split()
    assert lines[0].startswith("step:report@v1:") and len(lines) == 2


class Color(enum.Enum):
    RED = 1
    BLUE = 2


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


class Pair(NamedTuple):
    a: int
    b: str


def test_user_types_encode_by_name_and_fields() -> None:
    """Dataclasses, NamedTuples and Enums encode by their class name and fields: equal values
    share an encoding, different fields or classes do not."""
    assert canonical(Point(1, 2)) == canonical(Point(1, 2))
    assert canonical(Point(1, 2)) != canonical(Point(2, 1))
    assert canonical(Pair(1, "a")) != canonical((1, "a"))
    assert canonical(Color.RED) != canonical(Color.BLUE) != canonical(1)
    assert canonical(PurePosixPath("a/b")) == canonical(PurePosixPath("a") / "b")


def test_a_registered_name_keeps_keys_when_a_class_moves() -> None:
    """register_key_type(cls, name=...) makes the wire name, not the class's module, count."""

    @dataclasses.dataclass
    class Old:
        v: int

    @dataclasses.dataclass
    class New:
        v: int

    assert canonical(Old(1)) != canonical(New(1))
    register_key_type(Old, "app.Thing")
    register_key_type(New, "app.Thing")
    assert canonical(Old(1)) == canonical(New(1))


def test_numpy_arrays_encode_by_dtype_shape_and_values() -> None:
    """Equal arrays share an encoding whatever their memory order; dtype and shape count."""
    a = np.arange(6, dtype=np.int64).reshape(2, 3)
    assert canonical(a) == canonical(np.asfortranarray(a))
    assert canonical(a) != canonical(a.astype(np.int32))
    assert canonical(a) != canonical(a.reshape(3, 2))
    assert canonical(a) != canonical(a + 1)


def test_an_argument_without_canonical_form_names_itself_and_suggests_key() -> None:
    """An argument that cannot be encoded (here a lock inside a dict) is a StepKeyError naming
    the argument and where in it the value sits, and suggesting key=."""
    import threading

    with pytest.raises(StepKeyError) as info:
        fetch.key({"conn": threading.Lock()})
    message = str(info.value)
    assert "argument url['conn']" in message and "lock" in message.lower()
    assert "key=lambda url, limit, *, fmt: ..." in message
    assert isinstance(info.value, TypeError)


def test_a_self_referencing_argument_is_refused_not_recursed_forever() -> None:
    """A list that contains itself is refused with StepKeyError (no RecursionError)."""
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(StepKeyError, match="nests deeper") as info:
        fetch.key(loop)
    where = str(info.value).split(" cannot be part")[0]  # the path, kept short: both its ends
    assert where.endswith("the argument url" + "[0]" * 16 + "..." + "[0]" * 6)
    assert len(where) < 200


def test_key_callable_replaces_the_argument_digest() -> None:
    """key=callable keys the step on what the callable returns, not on the arguments."""

    @step(key=lambda user, now: user["id"])
    def greet(user: dict[str, Any], now: object) -> str:
        return "hi"

    assert greet.key({"id": 7, "name": "a"}, object()) == greet.key({"id": 7}, object())
    assert greet.key({"id": 7}, None) != greet.key({"id": 8}, None)


def test_wrong_arguments_are_a_step_key_error() -> None:
    """Arguments that do not fit the signature are refused when the step is called."""
    with pytest.raises(StepKeyError, match="missing a required argument"):
        fetch()
    with pytest.raises(StepKeyError, match="unexpected keyword"):
        fetch("u", nope=1)


def test_bad_options_are_refused_when_decorating() -> None:
    """Names with key separators, odd versions and non-callable key= are InvalidOptionError."""
    with pytest.raises(InvalidOptionError, match="name"):
        step(name="a:b")(lambda: 1)
    with pytest.raises(InvalidOptionError, match="version"):
        step(version="1 0")(lambda: 1)
    with pytest.raises(InvalidOptionError, match="key must be a callable"):
        step(key="k")(lambda: 1)  # type: ignore[call-overload]
    with pytest.raises(InvalidOptionError, match="isolate"):
        step(isolate="thread")(lambda: 1)


def test_a_script_function_is_named_by_its_qualname() -> None:
    """A step defined in __main__ (the script being run) is named by its qualname alone."""
    namespace: dict[str, Any] = {"__name__": "__main__", "step": step}
    exec("@step\ndef fetch(x):\n    return x\n", namespace)
    assert namespace["fetch"].key(1).startswith("step:fetch@v1:")


def test_a_do_function_and_an_async_function_are_keyed_alike() -> None:
    """@step keys a @do function and an async def by their own signatures."""

    @step(name="same")
    @do
    def as_program(x: int, y: int = 2) -> Any:
        return x + y
        yield

    @step(name="same")
    async def as_coroutine(x: int, y: int = 2) -> int:
        return x + y

    assert as_program.key(1) == as_coroutine.key(x=1, y=2)


# -- for all values --------------------------------------------------------------------------

leaves = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
          | st.text(max_size=8) | st.binary(max_size=8))
hashables = st.recursive(leaves, lambda inner: st.tuples(inner, inner) | st.frozensets(
    inner, max_size=3), max_leaves=8)
values = st.recursive(
    hashables,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hashables, inner, max_size=4)
    | st.sets(hashables, max_size=4),
    max_leaves=12,
)


def _typed(value: Any) -> Any:
    """`value` with every type made explicit, so equality also compares types (1 vs True)."""
    if isinstance(value, dict):
        return ("dict", sorted((repr(_typed(k)), _typed(v)) for k, v in value.items()))
    if isinstance(value, set | frozenset):
        return (type(value).__name__, sorted(repr(_typed(v)) for v in value))
    if isinstance(value, list | tuple):
        return (type(value).__name__, [_typed(v) for v in value])
    if isinstance(value, float):
        return ("float", value.hex() if not math.isnan(value) else "nan")
    return (type(value).__name__, value)


@given(values)
def test_encoding_is_deterministic_and_order_free(value: Any) -> None:
    """For all values: the encoding of a value equals that of a copy rebuilt in reverse
    insertion order."""

    def rebuilt(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: rebuilt(x) for k, x in reversed(list(v.items()))}
        if isinstance(v, list):
            return [rebuilt(x) for x in v]
        if isinstance(v, set):
            return set(reversed(list(v)))
        return v

    assert canonical(value) == canonical(rebuilt(value))


@given(values, values)
def test_equal_encodings_mean_equal_typed_values(a: Any, b: Any) -> None:
    """For all pairs of values: the same encoding only for values equal in value and type."""
    if canonical(a) == canonical(b):
        assert _typed(a) == _typed(b)
    else:
        assert _typed(a) != _typed(b)


def _other_pythons() -> list[str]:
    """Interpreters of other Python versions found here (PATH, pyenv), at most one each."""
    import glob
    import shutil

    found: dict[str, str] = {}
    for minor in range(11, 16):
        version = f"3.{minor}"
        if version == f"{sys.version_info[0]}.{sys.version_info[1]}":
            continue
        candidates = [shutil.which(f"python{version}") or "",
                      *sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}*/bin/"
                                                           "python")))]
        for exe in candidates:
            if exe and os.access(exe, os.X_OK):
                done = subprocess.run([exe, "-c", "import sys; print(sys.version_info[:2])"],
                                      capture_output=True, text=True, timeout=30)
                if done.returncode == 0 and done.stdout.strip() == str((3, minor)):
                    found[version] = exe
                    break
    return list(found.values())


# The encoder alone, loaded without the packages it lives in (whose other modules need the
# project's dependencies, which another interpreter here lacks): what runs is the real code.
_ENCODER_ONLY = textwrap.dedent("""
    import sys, types
    for name in ("doeff.serde", "doeff.steps"):
        package = types.ModuleType(name)
        package.__path__ = [name.replace(".", "/")]
        sys.modules[name] = package
    from doeff.steps.keys import canonical, digest
    import datetime, decimal, uuid
    values = [
        None, True, 0, -1, 2 ** 100, 1.5, float("nan"), "héllo", b"\\x00\\xff",
        (1, "a"), [1, [2, 3]], {"b": 2, "a": [1.0]}, {"x", "y"}, frozenset({1, 2}),
        datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.timezone.utc),
        datetime.date(2024, 5, 1), datetime.timedelta(days=1, seconds=3),
        decimal.Decimal("1.10"), uuid.UUID(int=7),
    ]
    print(digest(canonical(values)))
""")


def test_keys_are_the_same_under_other_python_versions() -> None:
    """The encoder run by the other Python versions installed here gives the pinned digest."""
    pythons = _other_pythons()
    if not pythons:
        message = "no other Python version (3.11-3.15) is installed to compare keys with"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    root = Path(__file__).resolve().parent.parent
    for exe in pythons:
        done = subprocess.run([exe, "-c", _ENCODER_ONLY], capture_output=True, text=True,
                              cwd=root, timeout=60, env={**os.environ, "PYTHONPATH": str(root)})
        assert done.returncode == 0, f"{exe}: {done.stderr}"
        assert done.stdout.strip() == "2055f77c4ac1b5cde37b6986fe6d0fba", exe


def _spec(value: Any) -> bytes:
    """The encoding as the module docstring writes it, one rule per type and nothing kept
    between calls: what the encoder's shortcuts (kept strs, small ints, counts) must equal."""
    cls = type(value)
    if value is None:
        return b"n"
    if cls is bool:
        return b"t" if value else b"f"
    if cls is int:
        return b"i%x;" % value
    if cls is float:
        return b"d" + struct.pack(">d", value)
    if cls is str:
        raw: bytes = value.encode("utf-8", "surrogatepass")
        return b"s%d:" % len(raw) + raw
    if cls is bytes:
        return b"b%d:" % len(value) + bytes(value)
    if cls is tuple or cls is list:
        tag = b"(" if cls is tuple else b"["
        return tag + b"%d:" % len(value) + b"".join(_spec(v) for v in value)
    if cls is dict:
        pairs = sorted(_spec(k) + _spec(v) for k, v in value.items())
        return b"{%d:" % len(pairs) + b"".join(pairs)
    if cls is set or cls is frozenset:
        tag = b"<" if cls is set else b">"
        return tag + b"%d:" % len(value) + b"".join(sorted(_spec(v) for v in value))
    raise AssertionError(f"no rule for {cls}")


wide_ints = st.integers(min_value=-40, max_value=1100) | st.integers()
spec_leaves = (st.none() | st.booleans() | wide_ints | st.floats() | st.binary(max_size=8)
               | st.text(max_size=70) | st.sampled_from(["a", "region", "x" * 64, "x" * 65]))
spec_values = st.recursive(
    spec_leaves,
    lambda inner: st.lists(inner, max_size=70).map(tuple) | st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8) | wide_ints, inner, max_size=4)
    | st.frozensets(spec_leaves, max_size=3),
    max_leaves=80,
)


@given(spec_values)
def test_the_encoder_writes_what_the_format_says(value: Any) -> None:
    """For all values: the encoding (an argument's too) is the one the format describes, with
    the encoder's tables of kept strs and small ints or without them."""
    from doeff.steps import keys

    assert canonical(value) == _spec(value)
    assert keys.encode_arguments(["v"], [value], "test") == [_spec("v") + _spec(value)]


def test_kept_strs_are_bounded_and_change_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The table of kept str encodings stops growing at its bound; strs met after that, and
    long ones, are encoded afresh, to the same bytes."""
    from doeff.steps import keys

    monkeypatch.setattr(keys, "_strs", {})
    monkeypatch.setattr(keys, "_KEPT_STRS", 3)
    names = [f"k{i}" for i in range(10)] + ["y" * 100]
    value = {name: name for name in names}
    assert canonical(value) == _spec(value)
    assert canonical(value) == _spec(value)  # read back from the table this time
    assert len(keys._strs) == 3
    assert "y" * 100 not in keys._strs


def test_the_encoder_shortcuts_end_where_their_tables_do() -> None:
    """Ints and item counts on either side of the tables' bounds encode as the format says."""
    from doeff.steps import keys

    for n in [*range(-20, 20), *range(1020, 1030), 2 ** 70, -(2 ** 70)]:
        for value in (n, [n], {"k": n}, {n: n}):
            assert canonical(value) == _spec(value)
            assert keys.encode_arguments(["v"], [value], "test") == [_spec("v") + _spec(value)]
    for size in range(60, 70):
        for value in (list(range(size)), tuple(range(size)), {str(i): i for i in range(size)},
                      frozenset(range(size))):
            assert canonical(value) == _spec(value)


def test_digests_are_sha256_whichever_implementation_computes_them() -> None:
    """The digest is SHA-256 of the format line and the data, as hashlib's OpenSSL one gives
    it, for short and long inputs alike."""
    import hashlib

    from doeff.steps.keys import KEY_FORMAT

    for data in (b"", b"x", b"i7;" * 20, bytes(range(256)) * 300):
        assert digest(data) == hashlib.sha256(KEY_FORMAT + data).hexdigest()[:32]
        assert digest(data, 64) == hashlib.sha256(KEY_FORMAT + data).hexdigest()


@given(st.integers() | st.text(max_size=5), st.integers(),
       st.sampled_from(["pos", "kw", "default"]), st.booleans())
def test_a_call_is_stored_under_the_key_key_gives(first: Any, second: int, shape: str,
                                                  by_key: bool) -> None:
    """For all arguments and call shapes (in place, by keyword, a default left out, a `key=`
    step): the program a step call returns looks its result up under `step.key(...)` of the
    same arguments, with the same call description `_call` makes."""

    def fn(z: Any, a: int = 3) -> None:  # declared out of name order: keys sort them
        return None

    made = step(name="shapes", key=(lambda z, a=3: [z, a]) if by_key else None)(fn)
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    args, kwargs = {"pos": ((first, second), {}), "kw": ((), {"a": second, "z": first}),
                    "default": ((first,), {})}[shape]
    program = made(*args, **kwargs)
    key, call = program.args[0], program.args[1]
    assert key == made.key(*args, **kwargs) == call.key
    expected = made._call(args, kwargs)
    assert (call.names, call.parts, list(call.values)) == \
        (expected.names, expected.parts, list(expected.values))
