"""Errors a user can cause. The CLI prints their message and exits with code 2, no traceback."""


class UserError(Exception):
    """Something the user can fix: a bad config, a missing or corrupt file, a value out of range."""


class ConfigError(UserError):
    """A config key that is unknown, ill-typed or out of range; the message names key and file."""


class DataError(UserError):
    """A dataset that is missing, truncated, corrupt or fails its checksum."""


class ThreatViolation(RuntimeError):
    """An adversarial example outside its threat model: a bug in an attack, never clipped away."""
