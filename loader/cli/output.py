"""The one way the command line prints: line by line, each line made printable (`loader.text`), so that text from
a bundle or a cluster can never add a line, hide one, or repaint the terminal. JSON documents carry the same
escaped strings."""
from __future__ import annotations

import json
from typing import Any

import click

from loader import settings
from loader.text import printable, printable_json


def emit(*lines: str, err: bool = False) -> None:
    """Print each argument as exactly one line (credentials scrubbed on stderr)."""
    for line in lines:
        click.echo(printable(settings.scrub(line) if err else line), err=err)


def emit_json(document: Any, **dumps: Any) -> None:
    click.echo(json.dumps(printable_json(document), **dumps))
