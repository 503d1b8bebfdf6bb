"""In-process storage: `InMemoryKV` (bytes; `doeff.storage.backends.memory`) and
`InMemoryStorage` (objects; `doeff.storage.presets`), at the import path doeff's API names."""

from doeff.storage.backends.memory import InMemoryKV
from doeff.storage.presets import InMemoryStorage

__all__ = ["InMemoryKV", "InMemoryStorage"]
