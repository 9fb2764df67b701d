"""``python -m collapse_cli`` is the ``collapse`` command."""

from .cli import main

main()
