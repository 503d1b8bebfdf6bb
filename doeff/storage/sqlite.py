"""SQLite storage: `SQLiteKV` (bytes; `doeff.storage.backends.sqlite`) and `SQLiteStorage`
(objects through a codec; `doeff.storage.presets`), at the import path doeff's API names."""

from doeff.storage.backends.sqlite import APPLICATION_ID, SCHEMA_VERSION, SQLiteKV
from doeff.storage.presets import SQLiteStorage

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "SQLiteKV", "SQLiteStorage"]
