"""Problems a user can fix: the one exception type the CLI prints as one line (exit 2), and warnings."""
import errno
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class UserError(Exception):
    """A bad value, a missing file or a mismatch the user can correct; never a bug in prunekit."""


REASON_LIMIT = 100  # characters of a third-party error kept in a UserError (torchvision's list every mirror)
_REFUSED = "WeightsUnpickler error:"  # where torch's weights-only loader says what it refused


# What the user can do about a cause that lies in the machine, not in prunekit (errno -> a hint).
_REMEDIES = {
    errno.EACCES: "check its permissions",
    errno.EPERM: "check its permissions",
    errno.EROFS: "the file system is read-only",
    errno.ENOSPC: "free space on that disk or write elsewhere",
    errno.EDQUOT: "the disk quota is used up",
    errno.EFBIG: "it would exceed the file-size limit, see ulimit -f",
    errno.EEXIST: "a file or a broken link has that name",
}


def file_problem(error: OSError, where: str | os.PathLike | None = None, doing: str = "use") -> UserError:
    """``error`` as a one-line UserError naming the file and the system's reason, e.g. ``cannot write
    /r/checkpoints/last.pt: No space left on device (free space ...)``. ``where`` (what prunekit was writing or
    reading) is named rather than the OS's own path, which may be a temporary file beside it."""
    place = where if where is not None else error.filename if error.filename is not None else "a file"
    cause = error.strerror or type(error).__name__
    remedy = _REMEDIES.get(error.errno)
    return UserError(f"cannot {doing} {place}: {cause}" + (f" ({remedy})" if remedy else ""))


@contextmanager
def file_errors(where: str | os.PathLike | None = None, doing: str = "use") -> Iterator[None]:
    """Turn an OSError raised inside the block into :func:`file_problem`: a full disk, a missing permission or
    a read-only folder is the user's to fix, and is told in one line, not a traceback."""
    try:
        yield
    except OSError as error:
        raise file_problem(error, where, doing) from error


def reason(error: BaseException) -> str:
    """A third-party exception as one short line, for the parenthesis of a UserError."""
    text = " ".join(str(error).split()) or type(error).__name__
    if "Weights only load failed" in text:
        # Only what was refused: torch's advice to load with weights_only=False would run the file's code.
        detail = text.split(_REFUSED, 1)[1] if _REFUSED in text else ""
        named = re.search(r"GLOBAL (\S+) was not an allowed global", detail)
        detail = f"it names {named[1]}" if named else detail.split(" Check the documentation", 1)[0].strip()
        text = f"refused: {detail or 'not only tensors and plain values'}"
    return text if len(text) <= REASON_LIMIT else text[: REASON_LIMIT - 3] + "..."


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
