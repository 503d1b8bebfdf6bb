"""`doeff cache migrate STORE --to CODEC`: re-encode every record, all or nothing.

Every record is decoded and re-encoded in memory first; only when all of them made it is the
result written, in one `put_many` transaction. So a value the target codec cannot carry (a
tuple for JSON, a user type msgpack was not told about...) leaves the store exactly as it was,
and the command lists every such key with the codec's reason.

Records already in the target codec are left as they are (not decoded, so not unpickled).
A workflow writing to the store while it migrates may have its write replaced by the older,
re-encoded value: migrate a store nobody is writing to.

With --signing-key-file every record read must carry a valid signature (with --accept-unsigned,
unsigned records are taken as they are: a conscious choice when first signing a store you
trust), and every record written is signed with the file's first key; records in the target
codec not signed with it are re-signed. A store with signed records is not migrated without
the keys, since the records written would be unsigned and the application would refuse them.
Payload transforms (zstd, encryption) are undone on read and not re-applied.

`--into NEW_STORE` writes into a new store instead and never changes STORE (opened read-only):
every record that can be read is copied (re-encoded with `--to`, else byte for byte), and the
ones that cannot are listed — the way to save what is left of a damaged store.
"""

from __future__ import annotations

import argparse
import sys

from doeff.cli.args import add_signing_key, add_store, add_unsafe_pickle
from doeff.cli.errors import EXIT_FAILED, CLIError
from doeff.cli.output import plural, printable, show_key, warn
from doeff.cli.progress import Progress
from doeff.cli.scan import (
    UNSAFE_TAGS,
    Record,
    open_record,
    pickle_refusal,
    read_record,
    scan,
    signing_keys,
    verify,
)
from doeff.cli.store import create_store, open_store, store_label
from doeff.errors import CorruptStoreError, DecodeError, EncodeError, UnknownCodecError
from doeff.serde.codec import Codec
from doeff.serde.envelope import seal
from doeff.serde.registry import get_codec, registered_tags
from doeff.serde.signing import key_id
from doeff.storage.base import KVStore


def _target(tag: str) -> Codec:
    try:
        return get_codec(tag)
    except UnknownCodecError:
        raise CLIError(
            f"unknown codec {tag!r}; choose one of {', '.join(registered_tags())}"
        ) from None


def _reencode(todo: list[Record], target: Codec, ns: argparse.Namespace,
              keys: list[bytes] | None) -> tuple[list[tuple[str, bytes]], list[str]]:
    """The re-encoded (key, record) pairs, and a `KEY: reason` line for each record that failed."""
    out: list[tuple[str, bytes]] = []
    failed: list[str] = []
    with Progress(len(todo), f"re-encoding to {target.tag}") as bar:
        for r in todo:
            try:
                if r.error is not None:
                    raise DecodeError(r.error)
                # Only an unsigned record may skip the check, and only when asked to: a record
                # with a wrong signature is never taken.
                verify = not (ns.accept_unsigned and r.key_id is None)
                value = open_record(r.raw, r.key, ns, keys, verify)
                # The expiry and a step's summary travel with the record.
                out.append((r.key, seal(value, target, key=r.key, signing_key=keys,
                                        expires_at=r.expires_at, info=r.info)))
            except DecodeError as exc:
                failed.append(f"{show_key(r.key)}: cannot read its {r.tag or 'record'}: {exc}")
            except EncodeError as exc:
                failed.append(f"{show_key(r.key)}: {exc}")
            bar.advance()
    return out, failed


def _refuse_unsigned_rewrite(name: str, records: list[Record], keys: list[bytes] | None) -> bool:
    """Without keys, refuse to re-encode a store with signed records: the records written would
    be unsigned (the application refuses them) and the ones read could not be verified. True if
    refused."""
    signed = [r for r in records if r.key_id is not None]
    if not signed or keys is not None:
        return False
    warn(f"{name} has {plural(len(signed), 'signed record')}; re-encoding without "
         "--signing-key-file would write unsigned records the application refuses, from "
         "records nobody verified. Nothing was changed")
    return True


def _refuse_pickles(name: str, todo: list[Record], ns: argparse.Namespace) -> bool:
    """Without --unsafe-pickle, name the pickle-family records to decode; True if there are any.

    Checked from headers before decoding anything: refusing must not half-unpickle.
    """
    unsafe = [r for r in todo if r.tag in UNSAFE_TAGS]
    if not unsafe or ns.unsafe_pickle:
        return False
    warn(pickle_refusal(f"{name} has {plural(len(unsafe), 'pickle-family record')}")
         + ". Nothing was changed:")
    for r in unsafe:
        print(f"  {show_key(r.key)} ({r.tag})", file=sys.stderr)
    return True


def cmd_migrate(ns: argparse.Namespace) -> int:
    """Re-encode every record of the store with the target codec, in one transaction."""
    if ns.into is not None:
        return _migrate_into(ns)
    if ns.to is None:
        raise CLIError("give --to CODEC to re-encode STORE, or --into NEW_STORE to copy it")
    name = store_label(ns.store)
    target = _target(ns.to)
    keys = signing_keys(ns)
    if ns.accept_unsigned and keys is None:
        raise CLIError("--accept-unsigned re-signs unsigned records, so it needs "
                       "--signing-key-file (or $DOEFF_SIGNING_KEY_FILE)")
    signer = None if keys is None else key_id(keys[0])
    ns.committed = False  # read by the Ctrl-C message: was the store already migrated?
    with open_store(ns.store) as kv:
        records = list(scan(kv))
        todo = [r for r in records if r.tag != target.tag or r.key_id != signer]
        if _refuse_unsigned_rewrite(name, records, keys) or _refuse_pickles(name, todo, ns):
            return EXIT_FAILED
        new, failed = _reencode(todo, target, ns, keys)
        if failed:
            warn(f"cannot migrate {len(failed)} of {len(records)} records of {name} to "
                 f"{target.tag}; nothing was changed:")
            for line in failed:
                print(f"  {printable(line)}", file=sys.stderr)
            return EXIT_FAILED
        if new:
            kv.put_many(new)
        ns.committed = True
    kept = len(records) - len(new)
    print(f"migrated {plural(len(new), 'record')} of {name} to "
          f"{target.tag} ({kept} already {target.tag})")
    return 0


def _readable(kv: KVStore, name: str) -> tuple[list[Record], list[str]]:
    """Every record that can be read, and a `KEY: reason` line for each listed one that cannot.

    A damaged SQLite page stops a whole scan; then the keys are listed (from the index, which
    may be intact) and each record is read on its own, so only the damaged page's are lost.
    """
    try:
        return list(scan(kv)), []
    except CorruptStoreError as exc:
        warn(f"{name}: cannot read the records in one pass ({exc.__cause__ or exc}); "
             "reading them one by one")
    try:
        keys = sorted(kv.keys())
    except CorruptStoreError as exc:
        raise CLIError(f"{name}: cannot list its keys either: {exc}", EXIT_FAILED) from exc
    records, lost = [], []
    for key in keys:
        try:
            raw = kv.get(key)
        except CorruptStoreError as exc:
            lost.append(f"{show_key(key)}: {exc.__cause__ or exc}")
            continue
        if raw is None:
            lost.append(f"{show_key(key)}: listed, but get() finds no record")
        else:
            records.append(read_record(key, raw, None))
    return records, lost


def _migrate_into(ns: argparse.Namespace) -> int:
    """Copy every readable record into a new store (re-encoded with --to if given)."""
    name, into = store_label(ns.store), store_label(ns.into)
    target = _target(ns.to) if ns.to is not None else None
    ns.committed = False
    with open_store(ns.store, readonly=True) as kv:
        records, left = _readable(kv, name)
    intact = []
    for r in records:
        problem = verify(r)
        if problem is None:
            intact.append(r)
        else:
            left.append(f"{show_key(r.key)}: {problem}")
    todo = [r for r in intact if target is not None and r.tag != target.tag]
    keys = signing_keys(ns)
    if target is not None and (_refuse_unsigned_rewrite(name, todo, keys)
                               or _refuse_pickles(name, todo, ns)):
        return EXIT_FAILED
    copies = [(r.key, r.raw) for r in intact if target is None or r.tag == target.tag]
    if target is not None:
        new, failed = _reencode(todo, target, ns, keys)
        copies += new
        left += failed
    with create_store(ns.into) as out:
        out.put_many(copies)
    ns.committed = True
    if left:
        warn(f"{plural(len(left), 'record')} of {name} could not be copied:")
        for line in left:
            print(f"  {line}", file=sys.stderr)
    codec = f" as {target.tag}" if target is not None else ""
    print(f"copied {len(copies)} of {plural(len(copies) + len(left), 'record')} of {name} "
          f"to {into}{codec}")
    return EXIT_FAILED if left else 0


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `doeff cache migrate`."""
    p = sub.add_parser("migrate", help="re-encode every record, or copy them to a new store",
                       description="Re-encode every record of STORE with CODEC, all or nothing: "
                       "if any record cannot be read or carried by CODEC, nothing is written and "
                       "each such key is listed. Records already in CODEC are left as they are. "
                       "With --into NEW_STORE, STORE is left untouched: every record that can be "
                       "read is copied into NEW_STORE (a new store; re-encoded only with --to), "
                       "and each one that cannot is listed.")
    add_store(p)
    p.add_argument("--to", metavar="CODEC",
                   help=f"target codec: {', '.join(registered_tags())}")
    p.add_argument("--into", metavar="NEW_STORE",
                   help="write into this new store instead of STORE (same forms as STORE)")
    add_unsafe_pickle(p)
    add_signing_key(p, signs=True)
    p.add_argument("--accept-unsigned", action="store_true",
                   help="with --signing-key-file: take unsigned records as they are and sign "
                   "them (use it once, when first signing a store you trust)")
    p.set_defaults(func=cmd_migrate)
