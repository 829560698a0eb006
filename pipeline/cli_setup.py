"""``python -m pipeline setup``: install the index template, indices and Kibana saved objects (issue #8)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Install the index template, the indices and Kibana's saved objects.")
