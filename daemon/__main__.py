"""`python -m daemon` is the same as the `session-db` command."""

from daemon.cli import main

raise SystemExit(main())
