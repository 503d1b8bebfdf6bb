"""PostgreSQL storage: `PostgresKV` (`doeff.storage.backends.postgres`; needs the `postgres`
extra), at its documented import path."""

from doeff.storage.backends.postgres import META_TABLE, SCHEMA_VERSION, PostgresKV

__all__ = ["META_TABLE", "SCHEMA_VERSION", "PostgresKV"]
