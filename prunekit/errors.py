"""The one exception type for mistakes a user can fix; the CLI prints it as one line and exits 2."""


class UserError(Exception):
    """A bad value, a missing file or a mismatch the user can correct; never a bug in prunekit."""
