"""The solver's user error: a solver or net setting that cannot be run."""

from converters.errors import InputError


class SolverError(ValueError, InputError):
    """A solver or net setting that cannot be run (message names the file / field)."""


# ---------------------------------------------------------------------------- helpers
