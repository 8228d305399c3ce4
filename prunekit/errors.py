"""Problems a user can fix: the one exception type the CLI prints as one line (exit 2), and warnings."""
import sys


class UserError(Exception):
    """A bad value, a missing file or a mismatch the user can correct; never a bug in prunekit."""


def warn(message: str) -> None:
    """One line on stderr for something prunekit worked around (the run goes on)."""
    print(f"prunekit: warning: {message}", file=sys.stderr, flush=True)
