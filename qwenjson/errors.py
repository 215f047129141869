"""The one error hierarchy of qwenjson: each error carries the exit code the CLI uses.

The core raises these; only ``cli.py`` turns them into ``Error: …`` on stderr and an exit code.
"""

from __future__ import annotations

# Named exit codes, documented in `qwenjson --help` and the README.
EXIT_OK = 0
EXIT_INTERNAL = 1  # a bug: an unexpected exception
EXIT_USAGE = 2  # bad options or arguments
EXIT_SCHEMA = 3  # schema missing, not JSON, not a valid JSON Schema, or refused by the compiler
EXIT_MODEL = 4  # model unknown, missing, not a GGUF, download or verification failed
EXIT_NO_VALID_OUTPUT = 5  # the model produced no document that passes validation
EXIT_INPUT = 6  # input text empty, not UTF-8, or too long for the context
EXIT_TIMEOUT = 7  # --timeout ran out
EXIT_SOME_RECORDS_FAILED = 8  # a --jsonl batch finished, but some records failed
EXIT_OUTPUT = 9  # stdout, --errors or --checkpoint can't be written (disk full, closed, …)
EXIT_CLUSTER = 10  # --ray: Ray not installed, the cluster unreachable, its workers gone
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class QwenJsonError(Exception):
    """Base class: a failure the user can act on, with the exit code it maps to."""

    exit_code: int = EXIT_INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(QwenJsonError):
    """Options or arguments that don't make sense together."""

    exit_code = EXIT_USAGE


class SchemaError(QwenJsonError):
    """The schema can't be read, isn't a valid JSON Schema, or can't be compiled.

    ``pointer`` is the JSON pointer (RFC 6901) of the offending place in the schema, if known.
    """

    exit_code = EXIT_SCHEMA

    def __init__(self, message: str, pointer: str | None = None) -> None:
        self.pointer = pointer
        self.problem = message  # without the pointer, for a message that names its own place
        if pointer is not None:
            message = f"{message} (at {pointer or '/'})"
        super().__init__(message)


class UnsupportedKeywordError(SchemaError):
    """The schema uses a keyword the compiler can neither enforce nor check afterwards."""

    def __init__(self, keyword: str, pointer: str, detail: str = "") -> None:
        self.keyword = keyword
        extra = f": {detail}" if detail else ""
        super().__init__(f"unsupported schema keyword {keyword!r}{extra}", pointer)


class ModelError(QwenJsonError):
    """The model can't be found, fetched, verified or loaded."""

    exit_code = EXIT_MODEL


class InputError(QwenJsonError):
    """The input text is empty, not UTF-8, or doesn't fit the model's context."""

    exit_code = EXIT_INPUT


class NoValidOutputError(QwenJsonError):
    """Generation ended without a document that passes validation.

    ``errors`` holds one readable line per validation error (JSON pointer and message).
    """

    exit_code = EXIT_NO_VALID_OUTPUT

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        self.errors = list(errors or [])
        if self.errors:
            message = message + "\n" + "\n".join(f"  {e}" for e in self.errors)
        super().__init__(message)


class OutputError(QwenJsonError):
    """Writing the output failed: stdout, the ``--errors`` file or the checkpoint (disk full).

    ``stdout`` says whether stdout itself is the stream that failed.
    """

    exit_code = EXIT_OUTPUT

    def __init__(self, message: str, *, stdout: bool = False) -> None:
        super().__init__(message)
        self.stdout = stdout


class ClusterError(QwenJsonError):
    """``--ray``: Ray isn't installed, the cluster can't be reached or has no worker left, or a
    record's worker died on it every time it was tried."""

    exit_code = EXIT_CLUSTER


class TimeoutExpired(QwenJsonError):
    """A --timeout ran out before the document was complete."""

    exit_code = EXIT_TIMEOUT


class QwenJsonWarning(UserWarning):
    """What the command line says on stderr and a library call can't print: the text was cut
    to fit the context (``truncate``), values of later pieces were left out. Issued by
    ``qwenjson.extract`` at the caller's line (``warnings.simplefilter("error",
    QwenJsonWarning)`` makes them errors)."""
