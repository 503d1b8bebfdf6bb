"""`RunStore`: run records and control requests in the "runs" namespace of a store.

Records are sealed by the envelope with msgpack, bound to their key, whatever codec the store's
cache uses: msgpack cannot run code, so the CLI and the dashboard read them without the
application's code and without trusting pickle, and a record moved under another key or damaged
is a DecodeError. Layout: `run:ID` holds the record, `control:ID` a request (cancel, pause,
resume) the run reads at its next heartbeat.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

from doeff.errors import DecodeError, InvalidOptionError
from doeff.protocols import DurableStorage
from doeff.runs.record import HOST, RunRecord
from doeff.serde import Envelope, MsgpackCodec
from doeff.storage.base import KVStore

RUN = "run:"
CONTROL = "control:"
ACTIONS = ("cancel", "pause", "resume")
_RUN_ID = re.compile(r"[^\s\x00-\x1f\x7f]{1,200}")
_SEAL = Envelope(MsgpackCodec(), trust=["msgpack"])


def check_run_id(run_id: object) -> str:
    """`run_id` if it can name a run (1 to 200 characters, no spaces or control characters)."""
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise InvalidOptionError(
            f"run_id={run_id!r:.80} refused: a run id is 1 to 200 characters without spaces or "
            f"control characters (e.g. 'nightly-2024-05-01'), or True for a generated one"
        )
    return run_id


class RunStore:
    """The run records of one store (its "runs" namespace); thread-safe as the store is."""

    def __init__(self, kv: KVStore) -> None:
        self.kv = kv

    def read(self, run_id: str) -> RunRecord | None:
        """The record of `run_id` as stored (not yet "lost"-checked), or None."""
        key = RUN + run_id
        raw = self.kv.get(key)
        return None if raw is None else _open(raw, key, run_id)

    def decode(self, run_id: str, raw: bytes) -> RunRecord:
        """The record that `raw`, as stored for `run_id`, holds (for a reader that has its
        bytes already); DecodeError if it is not one."""
        return _open(raw, RUN + run_id, run_id)

    def write(self, record: dict[str, Any]) -> None:
        """Store a record given as plain JSON types (see RunRecord.to_json)."""
        key = RUN + record["run_id"]
        self.kv.put(key, _SEAL.seal(record, key))

    def delete(self, run_id: str) -> bool:
        """Remove the record of `run_id` and any request for it; True if the record existed."""
        self.kv.delete(CONTROL + run_id)
        return self.kv.delete(RUN + run_id)

    def scan(self) -> Iterator[tuple[str, RunRecord | DecodeError]]:
        """(run id, its record or why it cannot be read) for every run, by run id."""
        for key, raw, _ in self.kv.records(RUN):
            run_id = key[len(RUN):]
            try:
                yield run_id, _open(raw, key, run_id)
            except DecodeError as exc:
                yield run_id, exc

    def request(self, run_id: str, action: str) -> None:
        """Ask the run to cancel, pause or resume at its next heartbeat (latest request wins)."""
        key = CONTROL + run_id
        self.kv.put(key, _SEAL.seal({"action": action, "at": time.time(),
                                     "by": f"{HOST}:{os.getpid()}"}, key))

    def pending(self, run_id: str) -> str | None:
        """The request left for `run_id` that the run has not read yet; None if there is none
        or it cannot be read."""
        raw = self.kv.get(CONTROL + run_id)
        return None if raw is None else _action(raw, CONTROL + run_id)

    def take_request(self, run_id: str,
                     apply: Callable[[str], None] | None = None) -> str | None:
        """The pending request for `run_id` (None if there is none or it cannot be read),
        removed after `apply` has taken it: a reader that sees no request knows it landed.
        Only the request read is removed: one left meanwhile stays for the next take."""
        key = CONTROL + run_id
        raw = self.kv.get(key)
        if raw is None:
            return None
        action = _action(raw, key)
        try:
            if action is not None and apply is not None:
                apply(action)
        finally:
            # Every doeff store can delete only the bytes it read; a plain delete here would
            # drop a cancel left while a pause was being applied.
            delete_if = getattr(self.kv, "compare_and_delete", None)
            if delete_if is not None:
                delete_if(key, raw)
            else:  # a KVStore of the application's without conditional writes
                self.kv.delete(key)
        return action


def _action(raw: bytes, key: str) -> str | None:
    try:
        request = _SEAL.unseal(raw, key)
    except DecodeError:
        return None
    action = request.get("action") if isinstance(request, dict) else None
    return action if action in ACTIONS else None

def _open(raw: bytes, key: str, run_id: str) -> RunRecord:
    try:
        data = _SEAL.unseal(raw, key)
    except DecodeError as exc:
        raise DecodeError(f"run record {run_id!r:.80} cannot be read: {exc}") from exc
    return RunRecord.from_json(data, run_id)


def run_store(storage: DurableStorage) -> RunStore:
    """The run records of `storage`; InvalidOptionError if it cannot hold any."""
    holder = getattr(storage, "run_records", None)
    if holder is None:
        raise InvalidOptionError(
            f"{type(storage).__name__} cannot hold run records (run_id= needs a Durable store "
            f"or InMemoryStorage, which keep them apart from the cache's keys); drop run_id= "
            f"or use e.g. Durable(SQLiteKV('wf.db'), MsgpackCodec())"
        )
    kv: KVStore = holder()
    return RunStore(kv)


__all__ = ["ACTIONS", "RunStore", "check_run_id", "run_store"]
