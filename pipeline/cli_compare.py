"""``python -m pipeline compare story|topic``: how outlets covered a story or a topic (issue #9)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Compare coverage across outlets: one story, or a whole topic.", no_args_is_help=True)
