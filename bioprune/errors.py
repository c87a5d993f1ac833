"""Errors that bioprune reports to users: one class, always naming the file, record or config key."""


class BiopruneError(RuntimeError):
    """A user-facing failure (bad input, bad config, numerical fault) with a clear message."""


class NumericalError(BiopruneError):
    """A NaN or inf appeared in a loss, gradient or score; the message names the sequence and stage."""


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so `finally` blocks remove temporary files before the process ends."""
    import signal
    import sys

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
