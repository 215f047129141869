"""The console script's entry point, as light as an import can be.

Importing the command line (Typer, Rich, jsonschema) takes about a second on a small CPU, and
``qwenjson.cli.main`` installs the signal handlers only after it. A Ctrl-C in that second
printed Python's ``KeyboardInterrupt`` traceback; here it ends as any other Ctrl-C does:
``Error: interrupted`` on stderr, exit 130, nothing on stdout.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import NoReturn

# qwenjson.errors.EXIT_SIGINT, not imported: this module must not wait for any other.
_EXIT_SIGINT = 130


def main() -> NoReturn:
    """Console-script entry point: ``qwenjson.cli.main`` once it is imported."""
    try:
        from qwenjson.cli import main as cli_main
    except KeyboardInterrupt:
        with contextlib.suppress(OSError):  # a closed stderr
            os.write(2, b"Error: interrupted\n")
        sys.exit(_EXIT_SIGINT)
    cli_main()
