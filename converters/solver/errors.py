"""The solver's user error: a solver or net setting that cannot be run."""


class SolverError(ValueError):
    """A solver or net setting that cannot be run (message names the file / field)."""


# ---------------------------------------------------------------------------- helpers
