"""``python -m celeriac``: the same as the ``celeriac`` command."""

from celeriac.cli.boot import main

main()
