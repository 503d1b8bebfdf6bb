"""`doeff cache get` reads what the library writes: records of the application's types without
its code (structural views), exactly with --import, numpy arrays by dtype/shape/values, codecs
of installed packages, and ints too long to print, all in real subprocesses on real stores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from doeff.serde import JSONCodec, MsgpackCodec, seal
from doeff.storage import SQLiteKV

ROOT = Path(__file__).resolve().parent.parent

# The application: its types, and a module-level codec that registers them (one under a custom
# wire name, one through hooks).
SHOP = textwrap.dedent("""
    import dataclasses, enum
    import pydantic
    from doeff.serde import MsgpackCodec

    class Color(enum.Enum):
        RED = 1

    @dataclasses.dataclass(frozen=True)
    class Order:
        id: int
        total: float
        color: Color

    class Customer(pydantic.BaseModel):
        name: str
        orders: list[Order]

    class Money:
        def __init__(self, cents):
            self.cents = cents
        def __repr__(self):
            return f"Money({self.cents})"

    CODEC = MsgpackCodec(types=[Order, Color, Customer])
    CODEC.register(Money, name="cash", encode=lambda m: m.cents, decode=Money)
""")


def doeff(*args: str, cwd: Path, env: dict[str, str] | None = None,
          prelude: str = "") -> subprocess.CompletedProcess[str]:
    """Run the doeff command (after `prelude`, in the same interpreter) and capture its output."""
    code = f"{prelude}\nimport sys\nfrom doeff.__main__ import main\nsys.exit(main())"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
        cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """A store written by the application in `tmp_path/app`, whose code lives only there."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "shop.py").write_text(SHOP)
    script = textwrap.dedent("""
        import numpy as np
        from doeff.serde import JSONCodec, seal
        from doeff.storage import SQLiteKV
        from shop import CODEC, Color, Customer, Money, Order
        with SQLiteKV("wf.db") as kv:
            kv.put("order", seal(Order(1, 9.5, Color.RED), CODEC, key="order"))
            kv.put("customer", seal(Customer(name="Ann", orders=[Order(2, 1.0, Color.RED)]),
                                    CODEC, key="customer"))
            kv.put("cash", seal([Money(250)], CODEC, key="cash"))
            kv.put("json", seal({"o": Order(3, 0.5, Color.RED)}, JSONCodec(types=[Order, Color]),
                                key="json"))
            kv.put("weights", seal({"w": np.arange(12, dtype=">f4").reshape(3, 4)}, CODEC,
                                   key="weights"))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=app, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    return app


def test_types_are_shown_by_name_and_fields_without_the_application(shop: Path,
                                                                   tmp_path: Path) -> None:
    """Run where the application's code is not importable, `get` shows each record's type name
    and fields (dataclass, Enum, pydantic model, a hooked type's state), for both codecs."""
    store = str(shop / "wf.db")
    assert doeff("cache", "get", store, "order", cwd=tmp_path).stdout == (
        "shop.Order(id=1, total=9.5, color=shop.Color('RED'))\n")
    customer = doeff("cache", "get", store, "customer", cwd=tmp_path)
    assert customer.stdout == (
        "shop.Customer(name='Ann',\n"
        "              orders=[shop.Order(id=2, total=1.0, color=shop.Color('RED'))])\n")
    assert doeff("cache", "get", store, "cash", cwd=tmp_path).stdout == "[cash(250)]\n"
    assert doeff("cache", "get", store, "json", cwd=tmp_path).stdout == (
        "{'o': shop.Order(id=3, total=0.5, color=shop.Color('RED'))}\n")
    shown = json.loads(doeff("cache", "get", store, "order", "--json", cwd=tmp_path).stdout)
    assert shown["value"] == {"type": "shop.Order", "fields": {
        "id": 1, "total": 9.5, "color": {"type": "shop.Color", "state": "RED"}}}


def test_import_decodes_the_applications_types_exactly(shop: Path) -> None:
    """With --import, the module's types (and its codec's custom names and hooks) decode to the
    real classes, shown by their own repr."""
    store = str(shop / "wf.db")
    order = doeff("cache", "get", store, "order", "--import", "shop", cwd=shop)
    assert order.stdout == "Order(id=1, total=9.5, color=<Color.RED: 1>)\n", order.stderr
    assert doeff("cache", "get", store, "customer", "--import", "shop", cwd=shop).stdout == (
        "Customer(name='Ann', orders=[Order(id=2, total=1.0, color=<Color.RED: 1>)])\n")
    assert doeff("cache", "get", store, "cash", "--import", "shop", cwd=shop).stdout == (
        "[Money(250)]\n")
    missing = doeff("cache", "get", store, "order", "--import", "nope", cwd=shop)
    assert missing.returncode == 2 and "--import nope: ModuleNotFoundError" in missing.stderr


@pytest.mark.parametrize("numpy", ["installed", "missing"])
def test_arrays_are_shown_by_dtype_shape_and_first_values(shop: Path, numpy: str) -> None:
    """An array shows as its dtype, shape and first values, read from the record's raw bytes
    when numpy cannot even be imported."""
    prelude = "import sys; sys.modules['numpy'] = None" if numpy == "missing" else ""
    result = doeff("cache", "get", str(shop / "wf.db"), "weights", cwd=shop, prelude=prelude)
    assert result.returncode == 0, result.stderr
    dtype = "float32 (big-endian)" if numpy == "missing" else ">f4"
    assert result.stdout == (
        f"{{'w': ndarray(dtype={dtype}, shape=(3, 4), values=[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, "
        "...])}\n")


def test_huge_ints_are_shown_by_digit_count_and_the_limit_stays(tmp_path: Path) -> None:
    """Ints past Python's 4300-digit limit show as their digit count (no quadratic conversion,
    no lifted limit); the command leaves the process-wide limit as it found it."""
    with SQLiteKV(tmp_path / "wf.db") as kv:
        kv.put("big", seal([1 << 8_000_000, -(10**5000), 10**4000], MsgpackCodec(), key="big"))
    result = doeff("cache", "get", str(tmp_path / "wf.db"), "big", cwd=tmp_path,
                   prelude="import atexit, sys; atexit.register(lambda: print("
                           "'limit', sys.get_int_max_str_digits()))")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("[<int of 2408240 digits>,\n -<int of 5001 digits>,\n 1000")
    assert result.stdout.endswith("limit 4300\n")
    shown = json.loads(doeff("cache", "get", str(tmp_path / "wf.db"), "big", "--json",
                             cwd=tmp_path).stdout)
    assert shown["value"][:2] == ["<int of 2408240 digits>", "-<int of 5001 digits>"]
    assert shown["value"][2] == 10**4000


def test_a_crafted_huge_decimal_int_is_refused(tmp_path: Path) -> None:
    """A JSON record holding a 1 MB decimal $int is an unreadable record, not a long wait."""
    from doeff.serde.envelope import seal as seal_raw

    class Raw:
        tag = "json"

        def encode(self, obj: object) -> bytes:
            return b'{"$int":"' + b"7" * 1_000_000 + b'"}'

        def decode(self, data: bytes) -> object:
            raise NotImplementedError

    with SQLiteKV(tmp_path / "wf.db") as kv:
        kv.put("crafted", seal_raw(None, Raw(), key="crafted"))
    result = doeff("cache", "get", str(tmp_path / "wf.db"), "crafted", cwd=tmp_path)
    assert result.returncode == 1 and "decimal $int of 1000000 characters" in result.stderr


def test_codecs_of_installed_packages_are_found_by_entry_point(tmp_path: Path) -> None:
    """A codec a package declares in the doeff.codecs entry-point group reads its records, in
    the command and in the library, loaded only when a record names its tag."""
    site = tmp_path / "site"
    (site / "rot13codec-1.0.dist-info").mkdir(parents=True)
    (site / "rot13codec-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: rot13codec\nVersion: 1.0\n")
    (site / "rot13codec-1.0.dist-info" / "entry_points.txt").write_text(
        "[doeff.codecs]\nrot13 = rot13codec:Rot13Codec\n")
    (site / "rot13codec.py").write_text(textwrap.dedent("""
        import codecs
        class Rot13Codec:
            tag = "rot13"
            def encode(self, obj):
                return codecs.encode(obj, "rot13").encode()
            def decode(self, data):
                return codecs.decode(data.decode(), "rot13")
    """))
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), str(site)])}
    write = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        from doeff.serde import seal
        from doeff.storage import SQLiteKV
        from rot13codec import Rot13Codec
        with SQLiteKV("wf.db") as kv:
            kv.put("secret", seal("hello", Rot13Codec(), key="secret"))
    """)], cwd=tmp_path, env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert write.returncode == 0, write.stderr
    shown = doeff("cache", "get", "wf.db", "secret", cwd=tmp_path, env=env)
    assert shown.stdout == "'hello'\n", shown.stderr
    library = subprocess.run([sys.executable, "-c", (
        "import sys\nfrom doeff.serde import unseal\nfrom doeff.storage import SQLiteKV\n"
        "data = SQLiteKV('wf.db').get('secret')\n"
        "print(unseal(data, key='secret', trust=['rot13']), 'rot13codec' in sys.modules)")],
        cwd=tmp_path, env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert library.stdout == "hello True\n", library.stderr
    unknown = doeff("cache", "get", "wf.db", "secret", cwd=tmp_path)  # package not installed
    assert unknown.returncode == 1 and "not registered" in unknown.stderr
    migrated = doeff("cache", "migrate", "wf.db", "--to", "msgpack", cwd=tmp_path, env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert doeff("cache", "get", "wf.db", "secret", cwd=tmp_path).stdout == "'hello'\n"


def test_views_keep_what_the_record_says_for_json_records_too(tmp_path: Path) -> None:
    """A JSON record of an unknown type shows its name and state like a msgpack one."""
    import dataclasses

    @dataclasses.dataclass
    class Point:
        x: int

    codec = JSONCodec()
    codec.register(Point, name="geo.Point")
    with SQLiteKV(tmp_path / "wf.db") as kv:
        kv.put("p", seal([Point(1)], codec, key="p"))
    assert doeff("cache", "get", "wf.db", "p", cwd=tmp_path).stdout == "[geo.Point(x=1)]\n"


def test_json_output_of_values_nested_as_deep_as_codecs_write(tmp_path: Path) -> None:
    """`get --json` of a list nested 1000 deep (which msgpack writes and reads) prints one whole,
    valid JSON document and exits 0, like the plain `get` of the same record."""
    value: list[object] = []
    for _ in range(1000):
        value = [value]
    with SQLiteKV(tmp_path / "wf.db") as kv:
        kv.put("deep", seal(value, MsgpackCodec(), key="deep"))
    result = doeff("cache", "get", str(tmp_path / "wf.db"), "deep", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(10_000)
    try:
        shown = json.loads(result.stdout)["value"]
    finally:
        sys.setrecursionlimit(limit)
    depth = 0
    while shown:
        shown, depth = shown[0], depth + 1
    assert depth == 1000


def test_a_records_type_name_cannot_make_import_run_application_code(tmp_path: Path) -> None:
    """With --import, a record's type name is looked up as a class of the module, never walked
    with getattr: a name through a property or a lazy module attribute runs nothing."""
    (tmp_path / "app.py").write_text(textwrap.dedent("""
        import pathlib

        class Lazy:
            @property
            def side_effect(self):
                pathlib.Path("property-ran").touch()

        THING = Lazy()

        def __getattr__(name):
            pathlib.Path("module-getattr-ran").touch()
            raise AttributeError(name)
    """))

    class Planted:
        pass

    writer = MsgpackCodec()
    writer.register(Planted, name="app.THING.side_effect", encode=lambda _: {"x": 1},
                    decode=lambda s: s)
    other = MsgpackCodec()
    other.register(Planted, name="app.missing", encode=lambda _: {"x": 2}, decode=lambda s: s)
    with SQLiteKV(tmp_path / "wf.db") as kv:
        kv.put("a", seal(Planted(), writer, key="a"))
        kv.put("b", seal(Planted(), other, key="b"))
    for key, shown in (("a", "app.THING.side_effect(x=1)"), ("b", "app.missing(x=2)")):
        result = doeff("cache", "get", str(tmp_path / "wf.db"), key, "--import", "app",
                       cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == shown
    assert not (tmp_path / "property-ran").exists()
    assert not (tmp_path / "module-getattr-ran").exists()


def test_line_breaks_in_names_read_from_a_record_cannot_add_output_lines(tmp_path: Path) -> None:
    """A type name or field name holding line breaks is shown escaped: the record cannot make
    `get` print lines of its choosing (such as a fake 'ok')."""
    import msgpack  # type: ignore[import-untyped]

    from doeff.serde.envelope import seal as seal_raw

    class Raw:
        tag = "msgpack"

        def __init__(self, name: str, state: object) -> None:
            packed: bytes = msgpack.packb([msgpack.ExtType(15, b""), name, state])
            self.body = b"\xc1\x00" + packed

        def encode(self, obj: object) -> bytes:
            return self.body

        def decode(self, data: bytes) -> object:
            raise AssertionError("not used")

    with SQLiteKV(tmp_path / "wf.db") as kv:
        kv.put("a", seal_raw(None, Raw("x\nwf.db: ok\nrow", {"f": 1}), key="a"))
        kv.put("b", seal_raw(None, Raw("T", {"a\nFAKE LINE\nb": 1, 2: 3}), key="b"))
    for key in ("a", "b"):
        result = doeff("cache", "get", str(tmp_path / "wf.db"), key, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert len(result.stdout.splitlines()) == 1, result.stdout
