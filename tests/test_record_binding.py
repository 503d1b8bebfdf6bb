"""Records that cannot mislead: a record answers only for the key it was written under, codec
tags are a restricted character set, and the CLI escapes whatever it prints from a store."""

from __future__ import annotations

import io
import re
import sqlite3
import zlib
from pathlib import Path

import pytest
from storage_fixtures import KVBackend
from test_cli import doeff, make_store

from doeff.cli.output import printable, table, warn
from doeff.errors import DecodeError, RegistrationError
from doeff.serde import JSONCodec, MsgpackCodec, peek, register_codec, seal, unseal
from doeff.storage import Durable, SQLiteKV


def test_a_record_copied_under_another_key_is_refused(kv_backend: KVBackend,
                                                      tmp_path: Path) -> None:
    """On every backend, a valid record copied to another key reads as a DecodeError, not as
    the other key's value."""
    with Durable(kv_backend.open(tmp_path), MsgpackCodec()) as store:
        store.put("price:apple", 3)
        raw = store.kv.get("price:apple")
        assert raw is not None
        store.kv.put("price:pear", raw)
        with pytest.raises(DecodeError, match="another key") as caught:
            store.get("price:pear")
        assert "'price:pear'" in str(caught.value)
        assert store.get("price:apple") == 3


def test_keys_are_bound_exactly() -> None:
    """Keys that differ in any way (case, a trailing space, one non-ASCII character, empty vs
    missing key aside) do not read each other's records."""
    keys = ["k", "K", "k ", "ké", "k\x00", "\U0001f511", "x" * 1000]
    records = {k: seal(k, JSONCodec(), key=k) for k in keys}
    for written, record in records.items():
        for read in keys:
            if read == written:
                assert unseal(record, key=read) == written
            else:
                with pytest.raises(DecodeError):
                    unseal(record, key=read)


def _sqlite_with_rows(path: Path, n: int, codec_record: object) -> dict[str, int]:
    """`n` rows key:00000.. written through `codec_record(key, i)`; their rowids."""
    with SQLiteKV(path) as kv:
        for i in range(n):
            kv.put(f"key:{i:05d}", codec_record(f"key:{i:05d}", i))  # type: ignore[operator]
    with sqlite3.connect(path) as conn:
        rowids = dict(conn.execute("SELECT key, rowid FROM doeff_kv"))
    conn.close()
    return rowids


def _point_index_entry(path: Path, key: str, to_rowid: int, rowid: int) -> None:
    """Corrupt the file so the index entry of `key` points at another row, the way a few
    flipped bits in an index page do (rowids < 128 are one byte after the key's text)."""
    data = bytearray(path.read_bytes())
    entry = key.encode() + bytes((rowid,))
    assert data.count(entry) == 1
    data[data.index(entry) + len(key)] = to_rowid
    path.write_bytes(bytes(data))


def _v1(value: object) -> bytes:
    payload = MsgpackCodec().encode(value)
    head = b"DF\x01\x07msgpack"
    return head + zlib.crc32(head + payload).to_bytes(4, "little") + payload


@pytest.mark.parametrize("bound", [True, False], ids=["v2", "v1-control"])
def test_a_corrupted_sqlite_file_cannot_answer_for_another_key(tmp_path: Path,
                                                               bound: bool) -> None:
    """A damaged index entry that sends key:00029 to the row of key:00027 is a DecodeError with
    key-bound records; the unbound control shows the corruption really returns the wrong
    row's value."""
    path = tmp_path / "wf.db"
    rowids = _sqlite_with_rows(path, 100, (lambda k, i: seal({"i": i}, MsgpackCodec(), key=k))
                               if bound else (lambda k, i: _v1({"i": i})))
    _point_index_entry(path, "key:00029", rowids["key:00027"], rowids["key:00029"])
    with Durable(SQLiteKV(path), MsgpackCodec()) as store:
        if bound:
            with pytest.raises(DecodeError, match="another key"):
                store.get("key:00029")
        else:
            assert store.get("key:00029") == {"i": 27}  # what happened before key binding
        assert store.get("key:00028") == {"i": 28}


@pytest.mark.parametrize("tag", ["", "a b", "tab\t", "esc\x1b[2J", "ü", "x" * 256, "a/b"])
def test_tags_outside_the_character_set_are_refused_on_registration(tag: str) -> None:
    """A codec tag is 1-255 of A-Z a-z 0-9 . _ + -; anything else cannot be registered."""

    class Odd(MsgpackCodec):
        pass

    codec = Odd()
    codec.tag = tag
    with pytest.raises(RegistrationError, match="A-Z a-z 0-9"):
        register_codec(codec)


@pytest.mark.parametrize("version", [1, 2])
def test_a_crafted_tag_with_control_characters_is_refused_on_read(version: int) -> None:
    """A record whose tag holds terminal escapes (written by hand, past registration) is a
    DecodeError from peek and unseal, in either format; the message shows the tag escaped."""
    tag = b"\x1b]0;owned\x07"
    head = b"DF" + bytes((version, len(tag))) + tag + (b"\0\0" if version == 2 else b"")
    record = head + zlib.crc32(head + b"\x90").to_bytes(4, "little") + b"\x90"
    for read in (peek, unseal):
        with pytest.raises(DecodeError, match="A-Z a-z 0-9") as caught:
            read(record)
        assert "\x1b" not in str(caught.value) and "\\x1b" in str(caught.value)


_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def test_the_cli_prints_nothing_from_a_store_raw(tmp_path: Path) -> None:
    """Keys, tags, values and error messages holding terminal escapes, C1 controls or bidi
    overrides come out escaped from ls, stats, get and migrate: no control character reaches
    the terminal but line breaks."""
    evil = "\x1b[2J\x1b]0;owned\x07\x9b31m\u202e"
    tag = b"\x1b[31m"
    head = b"DF\x01" + bytes((len(tag),)) + tag
    bad_tag = head + zlib.crc32(head + b"\xc0").to_bytes(4, "little") + b"\xc0"
    store = make_store("sqlite", tmp_path)
    store.fill([
        (f"key{evil}", seal(f"value{evil}", MsgpackCodec(), key=f"key{evil}")),
        ("value", seal({evil: [evil]}, JSONCodec(), key="value")),
        ("tag", bad_tag),
        ("junk", evil.encode() * 3),
    ])
    outputs = [
        doeff("cache", "ls", store.url), doeff("cache", "ls", store.url, "--json"),
        doeff("cache", "stats", store.url),
        doeff("cache", "get", store.url, f"key{evil}"), doeff("cache", "get", store.url, "value"),
        doeff("cache", "get", store.url, "tag"), doeff("cache", "get", store.url, "junk"),
        doeff("cache", "migrate", store.url, "--to", "json"),
    ]
    for result in outputs:
        for text in (result.stdout, result.stderr):
            assert _CONTROL.search(text) is None, (result.args, text)
    assert "\\x1b[2J" in outputs[3].stdout  # shown, escaped, not dropped
    assert "\\x1b[31m" in outputs[5].stderr


def test_cli_output_escapes_text_whatever_its_source() -> None:
    """Messages and table cells are escaped where they are printed, so a codec's own error
    message or a cell built from store text cannot carry a raw escape either."""
    stream = io.StringIO()
    warn("a codec said \x1b[2J\u202e\x9b", stream)
    cells = table(["KEY"], [["k\x1b[31m"]], right=set())
    for text in (stream.getvalue(), cells):
        assert _CONTROL.search(text.replace("\n", "")) is None
    assert "\\x1b[2J\\u202e\\x9b" in stream.getvalue() and "k\\x1b[31m" in cells
    assert printable("two\nlines\x07", keep="\n") == "two\nlines\\x07"
