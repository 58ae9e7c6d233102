"""`python -m cnnzoo` is the `cnnzoo` command."""

from cnnzoo.cli import main

raise SystemExit(main())
