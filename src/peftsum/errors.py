"""Errors a user can fix; the workflow shows them as one line, not a traceback."""


class UserError(Exception):
    """A problem with the config, the inputs or the environment, explained in one line."""
