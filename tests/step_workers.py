"""Worker processes for the claim tests (tests/test_steps_claims.py), run as scripts.

    python step_workers.py many STORE LOG GO SEED      # the 50 claimed steps, in a shuffled order
    python step_workers.py hold STORE LOG              # claims `slow` and computes it for ever
    python step_workers.py take STORE LOG              # runs `slow`; prints its value and timing

STORE is `sqlite:PATH`, `lmdb:PATH` or `postgres:TABLE:DSN`. Every computation appends a line
`NAME INDEX PID` to LOG (one small O_APPEND write: whole lines even with several writers), so the
test counts how often each step was really computed. `many` waits for the file GO to exist, so
that all workers start claiming at the same moment.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from typing import Any

from doeff import do, run_sync, step
from doeff.effects.cache import Claim
from doeff.serde import MsgpackCodec
from doeff.storage import LMDBKV, Durable, SQLiteKV

STEPS = 50
# seconds: a dead holder's lease runs out this long after its last renewal. Long enough that the
# taker process (started after the kill) is surely running before it runs out, even on a loaded
# machine where starting Python and importing doeff takes a second or more.
LEASE = 3.0


def open_store(spec: str) -> Durable:
    """The Durable named by a STORE argument."""
    kind, _, rest = spec.partition(":")
    if kind == "sqlite":
        return Durable(SQLiteKV(rest), MsgpackCodec())
    if kind == "lmdb":
        return Durable(LMDBKV(rest), MsgpackCodec())
    from doeff.storage import PostgresKV

    table, _, dsn = rest.partition(":")
    return Durable(PostgresKV(dsn, table=table, max_size=2), MsgpackCodec())


def record(log: str, name: str, index: int) -> None:
    """Append one computation to the log."""
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{name} {index} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


LOG = ""


@step(name="work", claim=Claim(lease=5.0, poll=0.01))
def work(i: int) -> int:
    record(LOG, "work", i)
    time.sleep(0.005)  # long enough that the other workers meet the claim
    return i * i


# The holder and the taker compute one and the same step: its key ignores `hold`.
@step(name="slow", key=lambda hold: "one", claim=Claim(lease=LEASE, poll=0.05))
def slow(hold: bool) -> str:
    record(LOG, "slow", int(hold))
    if hold:
        time.sleep(600)  # killed long before
    return f"computed by {os.getpid()}"


@do
def many(order: list[int]) -> Any:
    out = []
    for i in order:
        out.append((yield work(i)))
    return out


def main(argv: list[str]) -> int:
    global LOG
    mode, spec, LOG = argv[:3]
    store = open_store(spec)
    try:
        if mode == "many":
            go, seed = argv[3], int(argv[4])
            order = list(range(STEPS))
            random.Random(seed).shuffle(order)
            while not os.path.exists(go):
                time.sleep(0.005)
            result = run_sync(many(order), storage=store)
            print(json.dumps(dict(zip(order, result.value, strict=True))))
        elif mode == "hold":
            run_sync(slow(True), storage=store)  # never returns: killed
        else:
            started = time.monotonic()
            value = run_sync(slow(False), storage=store).value
            print(json.dumps({"value": value, "waited": time.monotonic() - started}))
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
