"""Atomic file writes: a crash mid-save leaves the old file or the new one, never a torn
one, and never a stray temporary file for long.

The new content goes to a temporary file beside the target (same folder, so the final
rename is atomic), is fsynced, then renamed over the target. A symlink is followed: its
target is replaced and the link stays. The file keeps the target's permission bits (a
new file gets the usual 0666 less the umask, not mkstemp's 0600). Temporary files are
named after the writing process, and one left by a process that no longer runs (killed
mid-save) is removed by the next save into that folder.
"""
import contextlib
import os
import re
import tempfile

PREFIX = ".fastdl-tmp-"
_STALE = re.compile(re.escape(PREFIX) + r"(\d+)-")


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def remove_stale_temporaries(directory):
    """Delete temporary files that a process which has since died left in directory."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        match = _STALE.match(name)
        if match and int(match.group(1)) != os.getpid() and not _process_alive(int(match.group(1))):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, name))


def _mode_for(target):
    try:
        return os.stat(target).st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write(filepath, write_content):
    """Call write_content(binary file) on a temporary file, then put it at filepath."""
    target = os.path.realpath(os.fspath(filepath))  # through symlinks: replace the target
    directory = os.path.dirname(target)
    remove_stale_temporaries(directory)
    fd, tmp = tempfile.mkstemp(prefix=f"{PREFIX}{os.getpid()}-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write_content(f)
            f.flush()
            os.fchmod(f.fileno(), _mode_for(target))
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return target
