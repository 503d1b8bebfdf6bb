"""LMDB storage: `LMDBKV` (`doeff.storage.backends.lmdb`), at its documented import path."""

from doeff.storage.backends.lmdb import DEFAULT_MAP_SIZE, LMDBKV, SCHEMA_VERSION

__all__ = ["DEFAULT_MAP_SIZE", "LMDBKV", "SCHEMA_VERSION"]
