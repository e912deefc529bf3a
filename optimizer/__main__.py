"""Run the search from the command line: ``python -m optimizer --help``."""

import sys

from optimizer.cli import main

sys.exit(main())
