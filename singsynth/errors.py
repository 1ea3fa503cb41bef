"""Errors a user can act on. The CLI prints them as one line and exits non-zero."""


class SingsynthError(Exception):
    """Base class: the message names the problem and, where possible, the fix."""


class CheckpointError(SingsynthError):
    """A checkpoint file is missing, corrupt, unsafe or of an unknown format."""


ModelLoadingError = CheckpointError


class ConfigError(SingsynthError):
    """A YAML config or preset has a missing, unknown or badly typed key."""


class DatasetError(SingsynthError):
    """A dataset folder has a missing or malformed file."""


class MidiFileError(SingsynthError):
    """A MIDI file cannot be read or played."""


class DeviceError(SingsynthError):
    """An audio or MIDI device is missing or failed."""


class EngineError(SingsynthError):
    """The note engine could not start (e.g. its generator process)."""
