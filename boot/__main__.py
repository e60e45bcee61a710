"""``python -m boot``: the ``kartka`` command, for where its script is not on the PATH."""

from boot.cli import main

main()
