"""``python -m hfrl.cli``: the same as the ``hfrl`` console command."""

from hfrl.cli import main

raise SystemExit(main())
