"""``python -m mobileprune`` runs the command line."""

import sys

from mobileprune.cli.main import main

sys.exit(main())
