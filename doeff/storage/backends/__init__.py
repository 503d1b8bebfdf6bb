"""KVStore backends, one module each: where bytes live (they import nothing from serde)."""
