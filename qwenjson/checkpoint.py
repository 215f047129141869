"""Checkpoints: an append-only, fsynced log of finished records and pieces, so that a rerun
after a crash or ``kill -9`` resumes without duplicating or losing output.

Crash order, everywhere: output first and durable, then the log line that says it is there.
Nothing read from the file is trusted until the header names this job (``Plan.fingerprint``).
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qwenjson import jsonstrict
from qwenjson.chunking import Piece
from qwenjson.errors import OutputError, UsageError
from qwenjson.merging import Found
from qwenjson.stream import FileMark, file_mark, write_all

__all__ = ["CHECKPOINT_VERSION", "Checkpoint", "Resume", "reconcile"]

# 2: a record longer than the context logs its pieces as they are done (version 1 never did).
CHECKPOINT_VERSION = 2
# The header's "fingerprint": how the job was identified. Absent: a hand-written list of
# options (before ``Plan``), so the fingerprints can't match: say so rather than "another job".
FINGERPRINT_KIND = "plan-1"


# How every header this version writes begins (``json.dumps`` of a dict whose first key is this).
_HEADER_START = b'{"qwenjson_checkpoint": '


class _Lines:
    """The whole lines of a file, read a MiB at a time: a checkpoint grows by a line a record
    for as long as a job runs (a cron job over a growing log: years), and read whole it took
    2.6 times its size in memory (a 1M-record checkpoint ~290 MB, on a Pi beside the model).
    ``end`` is the offset after the last whole line once all are taken: a kill mid-append
    leaves a partial last line, cut off there."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.end = 0

    def __iter__(self) -> Iterator[bytes]:
        offset = 0
        parts: list[bytes] = []  # the line not yet ended, read so far (joined once: a long
        # line was copied again at every read, 25 s for a 256 MiB one)
        while chunk := os.pread(self.fd, 1 << 20, offset):
            offset += len(chunk)
            last = chunk.rfind(b"\n")
            if last < 0:
                parts.append(chunk)
                continue
            lines = b"".join([*parts, chunk[:last]]).split(b"\n")
            parts = [chunk[last + 1 :]]
            self.end = offset - len(parts[0])
            yield from lines


@dataclass
class Resume:
    """Where a checkpointed batch stands: the last line done and what was recorded with it."""

    line: int = 0
    input_digest: str = ""
    failed: int = 0
    output: FileMark | None = None
    errors: FileMark | None = None
    # The input digest after each line 1, 2, …, 16 bytes each: a rerun on other input names the
    # first line that differs.
    digests: bytearray = field(default_factory=bytearray)
    # The pieces of the record after ``line`` that were done (a text longer than the context),
    # with their documents, and the input digest after that record.
    pieces: list[tuple[Piece, Found]] = field(default_factory=list)
    pieces_digest: str = ""

    def digest_at(self, line: int) -> str | None:
        """The recorded input digest after ``line``, if the checkpoint has it."""
        if line * 16 > len(self.digests):
            return None
        return self.digests[(line - 1) * 16 : line * 16].hex()


class Checkpoint:
    """An append-only, fsynced log of finished records, so a rerun resumes without duplicates.

    Line 1 names the job (``Plan.fingerprint``); each later line is one finished record: its
    input line number, a digest of the input up to it, the failures so far, and for regular
    output files their identity and size after the record's lines were written. On resume, a
    regular stdout (or errors file) that grew past the recorded size holds lines of the record
    that was in flight: they are cut off and the record is done again; one that shrank was
    truncated (``>`` instead of ``>>``) and the run refuses to continue. Through a pipe, a
    kill between writing a record and logging it repeats that one record.
    """

    def __init__(self, path: Path, job: str) -> None:
        self.path = path
        self.job = job
        self.fd: int | None = None

    def open(self, output: FileMark | None = None, errors: FileMark | None = None) -> Resume:
        """Lock (or create) the checkpoint, refuse one from another job, return where to resume.

        ``output`` / ``errors``: the regular files written to and their sizes now. A new
        checkpoint's header records them, so that what the first record in flight printed
        before a kill is cut off on the rerun, as for any later record (without them it
        stayed, and the record was printed twice).

        The lock (``flock``, released by the kernel even after kill -9) keeps a second run of
        the same job, say a cron job that overran its interval, from writing alongside.
        """
        name = str(self.path)
        self.lock()
        try:
            return self._read(name, output, errors)
        except OSError as e:
            self.close()
            raise UsageError(f"can't read --checkpoint {name!r}: {e.strerror}") from e

    def lock(self, *, create: bool = True) -> bool:
        """Open and lock the file, unless this object already has (``open`` does it first);
        False, and nothing held, when the file isn't there and ``create`` is off. A cluster run
        takes the lock before it connects: a cron run overlapping the last one started a whole
        pool of workers, each loading the model, only to be refused (exit 2 after 10 s)."""
        import fcntl

        if self.fd is not None:
            return True
        name = str(self.path)
        try:
            self.fd = os.open(self.path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
        except OSError as e:
            if not create and e.errno == errno.ENOENT:
                return False
            raise UsageError(f"can't open --checkpoint {name!r}: {e.strerror}") from e
        if not stat.S_ISREG(os.fstat(self.fd).st_mode):
            # /dev/zero would be read without end, /dev/null never resume anything.
            self.close()
            raise UsageError(f"--checkpoint {name!r} is not a regular file")
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.close()
            raise UsageError(
                f"--checkpoint {name!r} is in use by another qwenjson process"
            ) from None
        return True

    def _read(self, name: str, output: FileMark | None, errors: FileMark | None) -> Resume:
        assert self.fd is not None
        start = os.pread(self.fd, len(_HEADER_START), 0)
        if start[:1] and start[:1] not in b"{ \t\r\n\xef":
            # No header starts so (JSON, maybe after blanks or a BOM an editor added):
            # someone's file, refused before it is read (a GiB of it).
            self.close()
            raise UsageError(f"--checkpoint {name!r} is not a qwenjson checkpoint")
        reader = _Lines(self.fd)
        lines = iter(reader)
        first = next(lines, None)
        try:
            header = json.loads(first) if first is not None else None
        except json.JSONDecodeError:
            header = None
        # No whole line: new, or a kill while the header was written (its start is all there
        # is). Any other text is someone's file, never cut to nothing (a JSON file written
        # without a final newline was).
        partial_header = first is None and _HEADER_START.startswith(start)
        if (start and first is None and not partial_header) or (
            first is not None
            and (not isinstance(header, dict) or "qwenjson_checkpoint" not in header)
        ):
            self.close()
            raise UsageError(f"--checkpoint {name!r} is not a qwenjson checkpoint")
        version = header.get("qwenjson_checkpoint") if isinstance(header, dict) else None
        if first is not None and version not in (1, CHECKPOINT_VERSION):
            self.close()
            raise UsageError(
                f"--checkpoint {name!r} was written by another version of qwenjson: delete it "
                "to start over, or use another file"
            )
        if isinstance(header, dict) and header.get("job") != self.job:
            self.close()
            if header.get("fingerprint") != FINGERPRINT_KIND:
                raise UsageError(
                    f"--checkpoint {name!r} belongs to a different job: it was written by an "
                    "earlier qwenjson, which named jobs another way, so it can't be resumed; "
                    "delete it to start over, or use another file"
                )
            # An upgrade can cause this too: a new option is part of every job's name, and its
            # default may change what a record prints (``Plan.fingerprint``).
            raise UsageError(
                f"--checkpoint {name!r} belongs to a different job (the schema, model or "
                "options differ, or it was written by a qwenjson with other options): delete "
                "it to start over, or use another file"
            )
        # A new checkpoint starts from the files as they are; an older header has no marks
        # (nothing to cut back to).
        resume = Resume(output=output, errors=errors)
        if isinstance(header, dict):
            try:
                resume.output = _mark_from(header.get("out"))
                resume.errors = _mark_from(header.get("errors"))
            except (ValueError, TypeError) as e:
                self.close()
                raise UsageError(
                    f"--checkpoint {name!r} is damaged at line 1 ({type(e).__name__}: {e}): "
                    "delete it to start over, or use another file"
                ) from e
        for number, line in enumerate(lines, 2):
            try:
                entry = jsonstrict.loads(line)
                if "piece" in entry:
                    _resume_piece(resume, entry)
                    continue
                resume = Resume(
                    line=int(entry["line"]),
                    input_digest=str(entry["input"]),
                    failed=int(entry["failed"]),
                    output=_mark_from(entry.get("out")),
                    errors=_mark_from(entry.get("errors")),
                    digests=resume.digests,
                )
                if resume.line * 16 == len(resume.digests) + 16:
                    resume.digests += bytes.fromhex(resume.input_digest)
            except (ValueError, TypeError, KeyError) as e:  # JSONDecodeError is a ValueError
                self.close()  # nothing written: the file stays as it is
                raise UsageError(
                    f"--checkpoint {name!r} is damaged at line {number} ({type(e).__name__}: "
                    f"{e}): delete it to start over, or use another file"
                ) from e
        try:
            os.ftruncate(self.fd, reader.end)
            os.lseek(self.fd, 0, os.SEEK_END)
            if first is None:
                head = {
                    "qwenjson_checkpoint": CHECKPOINT_VERSION,
                    "job": self.job,
                    "fingerprint": FINGERPRINT_KIND,
                    "out": _mark_to(output),
                    "errors": _mark_to(errors),
                }
                write_all(self.fd, (json.dumps(head) + "\n").encode())
                os.fsync(self.fd)
                _fsync_dir(self.path.parent)
        except OSError as e:  # disk full: an output failure, as for the lines after it
            self.close()
            raise OutputError(f"cannot write the --checkpoint file {name!r}: {e.strerror}") from e
        return resume

    def commit(
        self,
        line: int,
        input_digest: str,
        failed: int,
        output: FileMark | None,
        errors: FileMark | None,
    ) -> None:
        """Log that ``line`` is finished (one write, then fsync)."""
        assert self.fd is not None
        entry = {
            "line": line,
            "input": input_digest,
            "failed": failed,
            "out": _mark_to(output),
            "errors": _mark_to(errors),
        }
        write_all(self.fd, (json.dumps(entry, separators=(",", ":")) + "\n").encode())
        os.fsync(self.fd)

    def commit_piece(
        self,
        line: int,
        input_digest: str,
        piece: Piece,
        found: Found,
        output: FileMark | None,
        errors: FileMark | None,
    ) -> None:
        """Log that ``piece`` of ``line`` is done, with its document (one write, then fsync).

        Its keys are not a record's: a version-1 reader refuses the file as damaged rather
        than take a piece for a finished record.
        """
        assert self.fd is not None
        entry = {
            "piece": piece.index,
            "of_line": line,
            "span": [piece.start, piece.end],
            "digest": input_digest,
            "found": found.to_json(),
            "out": _mark_to(output),
            "errors": _mark_to(errors),
        }
        # ASCII: a lone surrogate a model wrote as "\ud800" in a free string stays writable.
        write_all(self.fd, (json.dumps(entry, separators=(",", ":")) + "\n").encode())
        os.fsync(self.fd)

    def close(self) -> None:
        """Close the checkpoint file."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _resume_piece(resume: Resume, entry: Any) -> None:
    """Add a logged piece to ``resume`` (ValueError when it is not of the record in flight)."""
    of_line = int(entry["of_line"])
    if of_line != resume.line + 1:
        raise ValueError(f"a piece of line {of_line} after line {resume.line} was done")
    start, end = entry["span"]
    piece = Piece(int(entry["piece"]), int(start), int(end))
    resume.pieces.append((piece, Found.from_json(entry["found"])))
    resume.pieces_digest = str(entry["digest"])
    resume.output = _mark_from(entry.get("out"))
    resume.errors = _mark_from(entry.get("errors"))


def _mark_to(mark: FileMark | None) -> list[int] | None:
    return None if mark is None else [mark.device, mark.inode, mark.size]


def _mark_from(value: Any) -> FileMark | None:
    """A logged mark; None when none was logged (not a regular file). ValueError when it is
    damaged: a size below 0 would reach ``ftruncate``."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 3:
        raise ValueError(f"a file mark is three numbers, not {value!r:.40}")
    mark = FileMark(int(value[0]), int(value[1]), int(value[2]))
    if mark.size < 0:
        raise ValueError(f"a file size below 0 ({mark.size})")
    return mark


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the file's own fsync still holds
    finally:
        os.close(fd)


def reconcile(fd: int | None, recorded: FileMark | None, what: str) -> str | None:
    """Bring a regular output file back to its size at the last checkpoint; say what was done."""
    now = file_mark(fd)
    if fd is None or now is None:
        return None  # a pipe: nothing to undo
    if recorded is None or not now.same_file(recorded):
        # A header from before marks were logged, or a file other than the one checkpointed:
        # nothing of it to undo, and nothing to write over.
        _to_end(fd)
        return None
    if now.size < recorded.size:
        raise UsageError(
            f"{what} is the file the checkpoint wrote to, but it is shorter now ({now.size} < "
            f"{recorded.size} bytes): it was truncated (> instead of >>?); append with >> to "
            "resume, or delete the checkpoint to start over"
        )
    said = None
    if now.size > recorded.size:
        os.ftruncate(fd, recorded.size)
        said = (
            f"{what}: removed {now.size - recorded.size} bytes written after the last "
            "checkpoint (the record in flight is done again)"
        )
    _to_end(fd)
    return said


def _to_end(fd: int) -> None:
    if _fd_flags(fd) & os.O_APPEND == 0:
        os.lseek(fd, 0, os.SEEK_END)  # `1<>file`: write after what is kept, not over it


def _fd_flags(fd: int) -> int:
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_GETFL)
