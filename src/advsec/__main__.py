"""``python -m advsec``: the ``advsec`` command."""

from advsec.cli import main

raise SystemExit(main())
