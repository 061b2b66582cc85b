"""The exceptions that mean "the user asked for something that cannot work".

The command line turns exactly these into one sentence on stderr and exit status 2; anything else
is a bug of ours or of a dependency and keeps its traceback (exit 1). Each message says what is
wrong, why, and how to fix it, in one sentence.

The subclasses also derive from the built-in exception a Python caller would expect (a bad option
is a `ValueError`, a missing file a `FileNotFoundError`), so library users can catch either.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input: an option, a file, a layout or an environment the user can change."""


class ConfigError(UserError, ValueError):
    """An option or combination of options that cannot work (model shape, parallel layout)."""


class InputFileError(UserError, FileNotFoundError):
    """A file or directory given by the user is missing, unreadable or not what it should be."""


class CheckpointError(UserError, ValueError):
    """A checkpoint directory is missing, damaged, or does not fit the requested run."""


class DataError(UserError, ValueError):
    """A dataset or tokenizer input that cannot be used (empty, too small, wrong format)."""


class MissingDependencyError(UserError, ImportError):
    """An optional package is needed; the message names it and the extra that installs it."""


class DeviceError(UserError, RuntimeError):
    """The machine's accelerator cannot be used as it appears (devices visible, CUDA unusable)."""


class OutputExistsError(UserError, FileExistsError):
    """An output path already holds something that the command would overwrite."""
