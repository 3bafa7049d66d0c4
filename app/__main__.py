"""`python -m app` is the `engram` command."""

from app.cli import main

raise SystemExit(main())
