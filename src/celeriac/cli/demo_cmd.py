"""``celeriac demo``: added by the demo module once it exists."""

from __future__ import annotations

import click

demo: click.Command | None = None
