"""The ``omium`` command of the Python package: the Rust CLI, which the extension module carries
(``pip install omium`` puts it on the PATH; ``python -m omium`` runs it too)."""

from __future__ import annotations

import signal
import sys


def main() -> None:
    """Runs ``omium`` with this process's arguments and exits with its code."""
    from . import _omium

    # Ctrl-C ends it as it ends the Rust binary (the daemons among its commands install their
    # own handlers); a closed pipe is ignored by both, as Rust programs do.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _omium.cli_main(["omium", *sys.argv[1:]])


if __name__ == "__main__":
    main()
