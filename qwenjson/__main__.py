"""``python -m qwenjson``."""

from qwenjson.launch import main

main()
