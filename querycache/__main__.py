"""``python -m querycache``: the command line."""

from querycache.cli import main

main()
