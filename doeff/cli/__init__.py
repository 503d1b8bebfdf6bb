"""The `doeff` command line: inspect, repair and migrate a durable store (see docs/cli.md)."""
