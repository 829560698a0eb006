"""``python -m pipeline alerts list|resend``: the alert ledger for operators (issue #6)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Email alerts: list what was sent or is pending, resend a digest.", no_args_is_help=True)
