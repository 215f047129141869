"""``python -m qwenjson``."""

from qwenjson.cli import main

main()
