"""``python -m scythe_oo``: the same as the ``scythe-oo`` command."""

from scythe_oo.cli import main

raise SystemExit(main())
