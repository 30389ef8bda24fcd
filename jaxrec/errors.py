"""Errors that mean "the input is wrong", as opposed to a bug: scripts print them without a traceback."""

import errno
import os


class InputError(ValueError):
    """A setting, data set or file that cannot be used; the message names the problem and the fix."""


class SaveError(InputError):
    """A checkpoint could not be written; the message names the path, the cause and the last good checkpoint."""


# Errors of the storage a run writes to, not of jaxrec: a full disk, a quota, a read-only or forbidden folder.
STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM)


def os_error_cause(number: int | None) -> str:
    """An OS error number in the words a user acts on (why a folder or file cannot be written)."""
    if number == errno.EFBIG:
        return "a file is larger than this process may write (the file-size limit, ulimit -f)"
    if number in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on the device"
    if number in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if number == errno.EROFS:
        return "read-only file system"
    return os.strerror(number) if number else "unknown error"
