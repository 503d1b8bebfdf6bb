"""The `doeff` command (also `python -m doeff`); `doeff --help` lists the commands."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a sub-command."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "demo":
        from doeff.cli.demo import main as demo_main

        return demo_main(args[1:])
    if args and args[0] == "dashboard":
        # Above the shell's layer: it serves what the shell's readers read.
        from doeff.dashboard.command import main as dashboard_main

        return dashboard_main(args[1:])
    from doeff.cli.app import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())
