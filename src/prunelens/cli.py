"""The ``prunelens`` console command: ``prunelens diff A B`` (pyproject's
``[project.scripts]``). Each subcommand is a module with a ``main(argv)``."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

COMMANDS = {"diff": ("prunelens.diff", "compare two results folders (Markdown)")}

USAGE = "usage: prunelens COMMAND ...\n\ncommands:\n" + "".join(
    f"  {name:<6} {help_}\n" for name, (_, help_) in COMMANDS.items()
)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return 0
    if not args or args[0] not in COMMANDS:
        sys.stderr.write(USAGE)
        return 2
    module = importlib.import_module(COMMANDS[args[0]][0])
    return int(module.main(args[1:]))


if __name__ == "__main__":
    sys.exit(main())
