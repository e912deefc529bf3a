"""Run the search from the command line: ``python -m optimizer --help``."""

from optimizer.cli import main
from caviar.config import exit_process

exit_process(main())
