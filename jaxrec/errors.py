"""Errors that mean "the input is wrong", as opposed to a bug: scripts print them without a traceback."""


class InputError(ValueError):
    """A setting, data set or file that cannot be used; the message names the problem and the fix."""


class SaveError(InputError):
    """A checkpoint could not be written (no space, no permission, a file-size limit); the message
    names the path, the cause and the last good checkpoint."""
