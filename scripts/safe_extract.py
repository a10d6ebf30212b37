"""Safe extraction of .zip and .tar(.gz/.bz2/.xz) archives: nothing is written outside the destination folder.

preprocess.py uses it for dataset archives; evaluate.py can reuse it for model.tar.gz. Every member is checked before
anything is written, so a hostile archive (zip-slip, absolute paths, links, device files, a size bomb) fails with one
clear message before anything is written (only a zip lying about its sizes can stop part-way: extract into a scratch
folder you delete).
"""

from __future__ import annotations

import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
DEFAULT_MAX_EXTRACTED_BYTES = 20 * 1024**3
_COPY_CHUNK = 1024 * 1024


class ArchiveError(Exception):
    """The archive is unsafe, unreadable or too big; the message names the archive, the member and the problem."""


def is_archive(path: Path) -> bool:
    """True for the archive file names this module extracts (by suffix, case-insensitive)."""
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def member_problem(name: str) -> str | None:
    """Why a member name is unsafe to extract (as a phrase for the error message), or None when it is safe.

    Backslashes count as separators: zips made on Windows use them, and `..\\evil` is still a traversal.
    """
    normalized = name.replace("\\", "/")
    if normalized.startswith("/") or (len(normalized) > 1 and normalized[1] == ":" and normalized[0].isalpha()):
        return "an absolute path"
    if ".." in PurePosixPath(normalized).parts:
        return "a path with '..' that would be written outside the extraction folder (zip-slip)"
    return None


def _refuse(archive: Path, member: str, problem: str) -> ArchiveError:
    return ArchiveError(f"refusing to extract {archive.name}: member {member!r} is {problem}")


def _member_parts(name: str) -> tuple[str, ...]:
    return tuple(p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in ("", "."))


def _check_total(archive: Path, total: int, max_bytes: int) -> None:
    if total > max_bytes:
        raise ArchiveError(
            f"refusing to extract {archive.name}: it would unpack to {total:,} bytes, over the {max_bytes:,}-byte cap"
        )


def _copy_limited(src: BinaryIO, dst: BinaryIO, budget: int, archive: Path) -> int:
    # Zip headers can lie about sizes, so the cap is enforced on the bytes actually written, not only the declared ones.
    written = 0
    while chunk := src.read(_COPY_CHUNK):
        written += len(chunk)
        if written > budget:
            raise ArchiveError(f"refusing to extract {archive.name}: it unpacks to more than the size cap")
        dst.write(chunk)
    return written


def _extract_zip(archive: Path, dest: Path, max_bytes: int) -> int:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:
            problem = member_problem(info.filename)
            if problem is None and stat.S_ISLNK(info.external_attr >> 16):
                problem = "a symbolic link"
            if problem:
                raise _refuse(archive, info.filename, problem)
        _check_total(archive, sum(info.file_size for info in infos), max_bytes)
        budget = max_bytes
        for info in infos:
            parts = _member_parts(info.filename)
            if not parts:
                continue
            target = dest.joinpath(*parts)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                budget -= _copy_limited(src, dst, budget, archive)
        return max_bytes - budget


def _extract_tar(archive: Path, dest: Path, max_bytes: int) -> int:
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        for member in members:
            problem = member_problem(member.name)
            if problem is None and member.issym():
                problem = f"a symbolic link (to {member.linkname!r})"
            elif problem is None and member.islnk():
                problem = f"a hard link (to {member.linkname!r})"
            elif problem is None and not (member.isfile() or member.isdir()):
                problem = "a special file (device, FIFO or unknown type)"
            if problem:
                raise _refuse(archive, member.name, problem)
        total = sum(member.size for member in members if member.isfile())
        _check_total(archive, total, max_bytes)
        # The checks above already refuse everything the "data" filter would; the filter is a second line of defence
        # (and silences Python 3.12+'s deprecation warning) where this Python has it.
        if hasattr(tarfile, "data_filter"):
            tf.extractall(dest, members=members, filter="data")
        else:
            tf.extractall(dest, members=members)
        return total


def extract_archive(archive: Path, dest: Path, max_bytes: int = DEFAULT_MAX_EXTRACTED_BYTES) -> int:
    """Extracts `archive` into `dest` after checking every member; returns the bytes extracted.

    Raises ArchiveError for an unsafe member, a total over `max_bytes`, or an unreadable archive.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if archive.name.lower().endswith(".zip"):
            return _extract_zip(archive, dest, max_bytes)
        return _extract_tar(archive, dest, max_bytes)
    except ArchiveError:
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, RuntimeError, ValueError) as exc:
        # RuntimeError: encrypted zip members; EOFError/OSError: truncated or corrupt compressed streams.
        raise ArchiveError(f"cannot extract {archive.name}: {exc}") from exc
