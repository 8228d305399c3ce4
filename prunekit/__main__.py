"""``python -m prunekit``: the same command as the ``prunekit`` console script."""
import sys

from prunekit.cli import main

sys.exit(main())
