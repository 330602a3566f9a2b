"""Reading files that a results folder names, and writing only where we mean to.

A results folder may come from anyone (a shared drive, a tarball, a colleague's run), so a
path written inside it is text, not a path: it is taken apart, must stay below its folder
with no symbolic link on the way, and must end at a regular file. Files are written into a
folder under a name of ours, by rename, so a link planted there is replaced, never followed.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path, PurePosixPath

MAX_BYTES = 256 << 20  # no image of `bench visualize` comes near; a named disk image would


class UnsafePath(ValueError):
    """A name that leaves its folder, passes a symbolic link, or is not a regular file."""


def relative_parts(name) -> tuple[str, ...]:
    """The parts of a relative name that stays below its folder (no absolute path, no ``..``)."""
    if not isinstance(name, str) or not name:
        raise UnsafePath(f"{name!r} is not a file name")
    # a backslash is a separator on Windows and a NUL ends the name in C: both hide a path
    if "\\" in name or "\0" in name:
        raise UnsafePath(f"{name!r}: backslashes and NUL are refused in a file name")
    p = PurePosixPath(name)
    if p.is_absolute():
        raise UnsafePath(f"{name!r} is an absolute path; only names below the folder are read")
    if ".." in p.parts:
        raise UnsafePath(f"{name!r} leaves its folder (..)")
    if not p.parts:
        raise UnsafePath(f"{name!r} names the folder itself, not a file")
    return p.parts


def _walk(root: Path, parts: tuple[str, ...]) -> tuple[Path, os.stat_result]:
    """root/parts, lstat-ed part by part so that no part is a link; (path, stat of the last)."""
    path, st = root, None
    for part in parts:
        path = path / part
        st = os.lstat(path)  # FileNotFoundError: the caller decides whether missing matters
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePath(f"{path} is a symbolic link; links in a results folder are not followed")
    return path, st


def read_inside(root: Path, name, limit: int = MAX_BYTES) -> bytes:
    """The bytes of the regular file ``name`` below ``root``; UnsafePath if it is not one.

    FileNotFoundError when it does not exist (missing is not hostile)."""
    path, st = _walk(root, relative_parts(name))
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePath(f"{path} is not a regular file")
    if not path.resolve().is_relative_to(root.resolve()):  # cannot happen without a link; cheap to be sure
        raise UnsafePath(f"{path} resolves outside {root}")
    # O_NOFOLLOW and O_NONBLOCK: a link or FIFO swapped in after the lstat neither redirects nor hangs
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        now = os.fstat(f.fileno())
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            raise UnsafePath(f"{path} changed while it was read")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise UnsafePath(f"{path} is over {limit >> 20} MiB")
    return data


def make_dirs(root: Path, *parts: str) -> Path:
    """root/parts, each created if missing; UnsafePath where one is a link or not a folder,
    since a file written there would land wherever the link points."""
    path = root
    for part in parts:
        path = path / part
        try:
            path.mkdir()
        except FileExistsError:
            pass
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePath(f"{path} is a symbolic link; nothing is written through one")
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafePath(f"{path} is in the way: it is not a folder")
    return path


def write_into(folder: Path, name: str, data: bytes) -> Path:
    """folder/name holds ``data``, replaced atomically. ``name`` is one of ours: one part."""
    if relative_parts(name) != (name,):
        raise UnsafePath(f"{name!r} is not a plain file name")
    # a fresh random name opened O_EXCL: nothing planted in the folder can be written through
    tmp = folder / f".{name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / name)
    finally:
        tmp.unlink(missing_ok=True)
    return folder / name
