"""The error types rsray raises. Every message names the file or field and what is wrong."""

from __future__ import annotations


class RsrayError(Exception):
    """Base class of every error rsray raises on purpose."""


class ConfigError(RsrayError, ValueError):
    """A configuration value is missing, of the wrong type or not one of the allowed values."""


class DatasetNotFoundError(RsrayError, FileNotFoundError):
    """A dataset folder or shard set is not where the user said it is."""


class PatchError(RsrayError):
    """One patch (a set of files for one sample) is unusable.

    Args:
        path: the file or folder at fault.
        reason: what is wrong with it, in words a user can act on.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class ShardIntegrityError(RsrayError):
    """A shard set is incomplete (no manifest) or a shard does not match its checksum."""


class StorageError(RsrayError):
    """A storage location is malformed or cannot be reached (endpoint down, access refused)."""


class ResourceWaitError(RsrayError):
    """A trial or run waited longer than allowed for the cluster resources it needs."""
