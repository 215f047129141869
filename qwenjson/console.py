"""Everything qwenjson shows a person goes to stderr through Rich; stdout carries data only.

Rich drops colours and live displays by itself when stderr is not a terminal, so cron logs
and pipes get plain text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.live import Live
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

stderr = Console(stderr=True, highlight=False, soft_wrap=True)

ProgressCallback = Callable[[int, int | None], None]


def error(message: str) -> None:
    """Print ``Error: message`` on stderr (no markup: messages may contain brackets)."""
    stderr.print(Text("Error: ", style="bold red") + Text(message))


def warning(message: str) -> None:
    """Print ``Warning: message`` on stderr."""
    stderr.print(Text("Warning: ", style="yellow") + Text(message))


def info(message: str) -> None:
    """A status line on stderr."""
    stderr.print(Text(message, style="dim"))


@contextmanager
def download_progress(label: str, enabled: bool) -> Iterator[ProgressCallback | None]:
    """A byte progress bar (bytes, speed, ETA) on a terminal; ``None`` (silence) otherwise."""
    if not enabled or not stderr.is_terminal:
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=stderr, transient=True) as progress:
        task = progress.add_task(label, total=None)

        def update(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        yield update


@contextmanager
def token_preview(enabled: bool) -> Iterator[Callable[[str], None] | None]:
    """A live preview of generated text on a terminal's stderr; ``None`` when not shown."""
    if not enabled or not stderr.is_terminal:
        yield None
        return
    shown: list[str] = []
    with Live(Text(""), console=stderr, transient=True, refresh_per_second=12) as live:

        def on_text(piece: str) -> None:
            shown.append(piece)
            tail = "".join(shown)[-300:]
            live.update(Text(tail, style="dim"))

        yield on_text
