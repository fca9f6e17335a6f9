"""`python -m mlsd`: the same command as the installed `mlsd`."""

from mlsd.app.cli import main

raise SystemExit(main())
