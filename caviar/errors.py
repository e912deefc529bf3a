"""The one exception type that the command lines turn into a clear error line and exit 1."""


class CaviarError(Exception):
    """A problem the user can fix: bad input, missing file, unreachable database."""
