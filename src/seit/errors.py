"""The one exception family the CLI prints as a clear message (no traceback)."""


class SeitError(Exception):
    """Bad input or state the user can fix; the message names the file and the fix."""


class ConfigError(SeitError):
    """A flag value (or combination) that cannot work; a usage error, so the CLI exits with status 2."""
