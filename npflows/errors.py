"""UsageError: the one exception type for a user's mistake (a setting, a file, the environment).

Raised at the public boundaries (configuration, data files, checkpoints, device selection) with
a message that is the whole story: the module, what it expected, what it got. The `npflows`
command prints it as one `npflows: error: ...` line and exits with code 2; any other exception
is a bug in npflows and keeps its traceback. Subclasses say where it arose: ConfigError
(a setting, or a NAME no registry knows: npflows.registry), CheckpointError, RunDirectoryError,
NonFiniteError (a run that diverged: its message, too, is the whole story),
backend.DeviceError, runners.chardata.DataError, runners.compress_layouts.CompressionError
(compress/decompress input, files and checkpoints).
"""


class UsageError(ValueError):
    """A configuration, data or environment error; the message names the cause and the fix."""


class ConfigError(UsageError):
    """A setting that cannot work; the message says which one and why."""
