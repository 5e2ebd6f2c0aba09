"""``python -m colakit`` is the ``colakit`` command."""

from colakit.cli.app import main

main()
