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
"""

from __future__ import annotations

import argparse
import sys

from doeff.cli.args import add_signing_key, add_store, add_unsafe_pickle
from doeff.cli.errors import EXIT_FAILED, CLIError
from doeff.cli.output import plural, printable, show_key, warn
from doeff.cli.progress import Progress
from doeff.cli.scan import UNSAFE_TAGS, Record, open_record, pickle_refusal, scan, signing_keys
from doeff.cli.store import open_store, store_label
from doeff.errors import DecodeError, EncodeError, UnknownCodecError
from doeff.serde.codec import Codec
from doeff.serde.envelope import seal
from doeff.serde.registry import get_codec, registered_tags
from doeff.serde.signing import key_id


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
                out.append((r.key, seal(value, target, key=r.key, signing_key=keys)))
            except DecodeError as exc:
                failed.append(f"{show_key(r.key)}: cannot read its {r.tag or 'record'}: {exc}")
            except EncodeError as exc:
                failed.append(f"{show_key(r.key)}: {exc}")
            bar.advance()
    return out, failed


def cmd_migrate(ns: argparse.Namespace) -> int:
    """Re-encode every record of the store with the target codec, in one transaction."""
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
        signed = [r for r in records if r.key_id is not None]
        if signed and keys is None:
            warn(f"{name} has {plural(len(signed), 'signed record')}; migrating without "
                 "--signing-key-file would write unsigned records the application refuses. "
                 "Nothing was changed")
            return EXIT_FAILED
        unsafe = [r for r in todo if r.tag in UNSAFE_TAGS]
        if unsafe and not ns.unsafe_pickle:
            # Checked from headers before decoding anything: refusing must not half-unpickle.
            warn(pickle_refusal(f"{name} has {plural(len(unsafe), 'pickle-family record')}")
                 + ". Nothing was changed:")
            for r in unsafe:
                print(f"  {show_key(r.key)} ({r.tag})", file=sys.stderr)
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


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `doeff cache migrate`."""
    p = sub.add_parser("migrate", help="re-encode every record with another codec",
                       description="Re-encode every record of STORE with CODEC, all or nothing: "
                       "if any record cannot be read or carried by CODEC, nothing is written and "
                       "each such key is listed. Records already in CODEC are left as they are.")
    add_store(p)
    p.add_argument("--to", required=True, metavar="CODEC",
                   help=f"target codec: {', '.join(registered_tags())}")
    add_unsafe_pickle(p)
    add_signing_key(p, signs=True)
    p.add_argument("--accept-unsigned", action="store_true",
                   help="with --signing-key-file: take unsigned records as they are and sign "
                   "them (use it once, when first signing a store you trust)")
    p.set_defaults(func=cmd_migrate)
