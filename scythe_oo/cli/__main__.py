"""``python -m scythe_oo.cli``: the ``scythe-oo`` command."""

from scythe_oo.cli import main

raise SystemExit(main())
