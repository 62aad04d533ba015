"""`python -m server PLAN [options]`: the server without the compiler (see server/cli.py)."""

import sys

from server.cli import main

sys.exit(main())
