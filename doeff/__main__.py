"""The `doeff` command (also `python -m doeff`)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a sub-command."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "demo":
        from doeff.demo import main as demo_main

        return demo_main(args[1:])
    print("usage: doeff demo [--db PATH]\n\n  demo   run a durable workflow, kill it, resume it",
          file=sys.stderr if args else sys.stdout)
    return 2 if args and args[0] not in ("-h", "--help") else 0


if __name__ == "__main__":
    sys.exit(main())
