"""The one exception family the CLI prints as a clear message (no traceback), and the exit statuses."""

# Exit statuses of every `seit` command (README "Exit status" and `seit --help` list them).
EXIT_OK = 0
EXIT_ERROR = 1  # bad input or environment: a file that cannot be read or written, damaged data, ...
EXIT_USAGE = 2  # an unknown flag or a flag value that cannot work (argparse uses 2 too)
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: stopped by a signal after saving a checkpoint; rerun to continue
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


class SeitError(Exception):
    """Bad input or state the user can fix; the message names the file and the fix."""


class ConfigError(SeitError):
    """A flag value (or combination) that cannot work; a usage error, so the CLI exits with status 2."""
