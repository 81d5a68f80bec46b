"""Errors that teach. Anything raised as a GankitError is a problem with the user's input
(config, data, files); the CLI prints its message on one line and exits with code 2."""


class GankitError(Exception):
    """Bad input: a clear message that names the problem (and the file, where there is one)."""


class ConfigError(GankitError, ValueError):
    """An invalid configuration value or combination."""


class DataError(GankitError):
    """A dataset file that is missing, truncated, corrupt or mismatched."""


class RunError(GankitError):
    """A run folder or checkpoint that cannot be used."""
