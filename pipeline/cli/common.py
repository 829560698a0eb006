"""What every command of ``python -m pipeline`` shares: the consoles, the common options, settings from
the environment and flags (and, for the commands that only read, finding the demo's data), the one-line
failure, the progress bar, the index opener."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipeline.run import Progress as ProgressCallback
from pipeline.settings import DATA_DIR_FEEDS, DEFAULT_INDEX, SEED_FEEDS, Settings
from pipeline.store.embedded import holds_index
from pipeline.tasks import open_index as open_index  # every command opens the index the same way
from pipeline.topics.profiles import Profile, load_profiles

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
EsUrlOpt = Annotated[str | None, typer.Option("--es-url", help="Elasticsearch URL [env ES_URL]; default: embedded.")]
IndexOpt = Annotated[str | None, typer.Option("--es-index", help="Alias to search and write [env ES_INDEX].")]
DataOpt = Annotated[Path | None, typer.Option("--data-dir", help="Local state directory [env DATA_DIR].")]


# The alias `demo` writes, whatever ES_INDEX says: a read command finds the demo's data under it.
DEMO_INDEX = DEFAULT_INDEX


def settings_from(**overrides: Any) -> Settings:
    """The environment's settings with the command's flags (None: not given) on top."""
    return Settings.from_env(os.environ, **overrides)


def read_settings(*, required: bool = True, **overrides: Any) -> Settings:
    """``settings_from`` for a command that only reads the index: right after ``demo`` (whose data stays
    in ``DATA_DIR/demo``) it finds the demo's index by itself; with nothing to read, when ``required``, it
    exits saying what to run instead of starting an empty server (:func:`data_to_read`)."""
    return data_to_read(settings_from(**overrides), required=required)


def data_to_read(settings: Settings, *, required: bool = True) -> Settings:
    """Where a read command finds the index: ``ES_URL``, else the embedded server's data in ``DATA_DIR``;
    when that holds none but ``DATA_DIR/demo`` does (the demo ran), the demo's, said on stderr in one
    line, with the feed list the demo polled. With no data anywhere, exits 1 saying exactly what to run
    (or, not ``required``, returns ``settings`` as they are)."""
    if settings.es_url or holds_index(settings.data_dir):
        return settings
    demo = settings.data_dir / "demo"
    if holds_index(demo) and settings.es_index == DEMO_INDEX:
        err.print(
            f"reading the demo's index in {demo} (nothing indexed in {settings.data_dir} yet; "
            "DATA_DIR or ES_URL choose another)",
            highlight=False,
        )
        # The demo's feed list comes with its data, unless a feed list was named.
        feeds = demo / DATA_DIR_FEEDS
        if settings.feeds_file == SEED_FEEDS and feeds.is_file():
            return settings.with_(data_dir=demo, feeds_file=feeds)
        return settings.with_(data_dir=demo)
    if not required:
        return settings
    fail(
        f"nothing indexed in {settings.data_dir} yet: run `python -m pipeline run` (polls {settings.feeds_file}) "
        "or `python -m pipeline demo` (the bundled sample), or set ES_URL to read a cluster"
    )


def fail(message: str) -> NoReturn:
    """Print a one-line reason and exit 1."""
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(1)


def load_profiles_checked(settings: Settings, profile_id: str | None) -> list[Profile]:
    """The profiles; fails (exit 1) when ``profile_id`` names none of them.

    Raises:
        ConfigError: a profile file is invalid.
    """
    profiles = load_profiles(settings.profiles_dir)
    if profile_id is not None and profile_id not in {p.id for p in profiles}:
        fail(f"no profile {profile_id!r} in {settings.profiles_dir}")
    return profiles


@contextmanager
def progress_bar(enabled: bool) -> Iterator[ProgressCallback | None]:
    """A progress bar on stderr while the block runs, when asked for and stderr is a terminal; yields
    the callback to report progress with (None when there is no bar)."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    bar = Progress(
        TextColumn("{task.description:>9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
    tasks: dict[str, Any] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done, total=total)

    with bar:
        yield update
