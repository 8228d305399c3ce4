"""Problems a user can fix: the one exception type the CLI prints as one line (exit 2), and warnings."""
import sys
from collections.abc import Callable


class UserError(Exception):
    """A bad value, a missing file or a mismatch the user can correct; never a bug in prunekit."""


def warn(message: str) -> None:
    """One line on stderr for something prunekit worked around (the run goes on)."""
    print(f"prunekit: warning: {message}", file=sys.stderr, flush=True)


def run_script(main: Callable[[list[str]], object]) -> None:
    """Run a script's ``main`` on the command line's arguments: a UserError (e.g. --device cuda without CUDA)
    prints one line and exits 2, as prunekit itself does."""
    try:
        main(sys.argv[1:])
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
