"""``python -m omium``: the ``omium`` command line."""

from omium._cli import main

main()
