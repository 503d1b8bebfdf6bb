"""Random sequences of every KVStore verb, on every backend, agree with a dict model."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule
from storage_fixtures import KV_BACKENDS, KVBackend

from doeff.storage import KVStore

# Small alphabets so that keys collide often; long keys cross LMDB's 511-byte limit.
KEYS = st.one_of(
    st.text(alphabet="ab\x00é日🎉", max_size=4),
    st.builds(lambda c, n: c * n, st.sampled_from("xé"), st.integers(250, 700)),
)
VALUES = st.binary(max_size=64)


def machine_for(backend: KVBackend) -> type[RuleBasedStateMachine]:
    """A state machine class driving a fresh store of `backend` against a dict model."""

    class KVMachine(RuleBasedStateMachine):
        keys = Bundle("keys")

        def __init__(self) -> None:
            super().__init__()
            self.dir = Path(tempfile.mkdtemp(prefix="doeff-kv-"))
            self.store: KVStore = backend.open(self.dir)
            self.model: dict[str, bytes] = {}

        @rule(target=keys, key=KEYS)
        def new_key(self, key: str) -> str:
            return key

        @rule(key=keys, value=VALUES)
        def put(self, key: str, value: bytes) -> None:
            self.store.put(key, value)
            self.model[key] = value

        @rule(pairs=st.lists(st.tuples(keys, VALUES), max_size=4))
        def put_many(self, pairs: list[tuple[str, bytes]]) -> None:
            self.store.put_many(pairs)
            self.model.update(pairs)

        @rule(prefix=st.sampled_from(["", "a", "x", "é"]))
        def records(self, prefix: str) -> None:
            got = [(k, v) for k, v, _ in self.store.records(prefix)]
            assert got == sorted((k, v) for k, v in self.model.items() if k.startswith(prefix))

        @rule(key=keys)
        def get(self, key: str) -> None:
            assert self.store.get(key) == self.model.get(key)

        @rule(key=keys)
        def delete(self, key: str) -> None:
            assert self.store.delete(key) == (self.model.pop(key, None) is not None)

        @rule(key=keys)
        def exists(self, key: str) -> None:
            assert self.store.exists(key) == (key in self.model)

        @rule()
        def clear(self) -> None:
            self.store.clear()
            self.model.clear()

        @invariant()
        def same_size_and_keys(self) -> None:
            assert len(self.store) == len(self.model)
            assert sorted(self.store.keys()) == sorted(self.model)

        def teardown(self) -> None:
            self.store.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    KVMachine.__name__ = f"KVMachine_{backend.name}"
    return KVMachine


@pytest.mark.parametrize("backend", KV_BACKENDS, ids=lambda b: b.name)
def test_store_agrees_with_a_dict(backend: KVBackend) -> None:
    """Every backend behaves like a dict under random sequences of the KVStore verbs."""
    reason = backend.unavailable()
    if reason is not None:
        pytest.skip(f"{backend.name}: {reason}")
    machine = machine_for(backend)
    machine.TestCase.settings = settings(
        max_examples=40, stateful_step_count=40, deadline=None
    )
    machine.TestCase().runTest()
