"""``python -m main``: the ``kartka`` command, for where its script is not on the PATH."""

from main.cli import main

main()
