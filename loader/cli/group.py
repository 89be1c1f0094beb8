"""The `esbundle` group and its single error boundary: every EsbundleError becomes its message and its class's
exit code, with no traceback; anything unexpected becomes exit 1, scrubbed of credentials."""
from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import click

from loader import __version__, settings
from loader.cli.output import emit
from loader.errors import EXIT_CODES, EsbundleError, NoTrustedKeyError, UntrustedSignerError

DEBUG = "ESBUNDLE_DEBUG"

# What to do next, in this command line's words, for errors raised by code that knows no flags.
FLAG_HINTS: dict[type[EsbundleError], str] = {
    NoTrustedKeyError: f"pass --trusted-key PUB or set {settings.TRUSTED_KEYS}",
    UntrustedSignerError: "pin the publisher's public key with --trusted-key, after checking its key id out of band",
}

EPILOG = "Exit codes: " + "; ".join(f"{code} {text.split(':')[0]}" for code, text in EXIT_CODES.items())


def flag_hint(exc: EsbundleError) -> EsbundleError:
    if exc.advice is None:
        hint = next((text for kind, text in FLAG_HINTS.items() if isinstance(exc, kind)), None)
        exc.add_context(next_step=hint)
    return exc


class EsbundleGroup(click.Group):
    """The commands by name, each module imported when its command is asked for (click's lazy-loading recipe)."""

    def __init__(self, *args: Any, modules: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.modules = dict(modules or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.modules})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.modules and cmd_name not in self.commands:
            command = importlib.import_module(self.modules[cmd_name]).command
            if command.name != cmd_name:
                raise RuntimeError(f"{self.modules[cmd_name]} defines {command.name!r}, registered as {cmd_name!r}")
            self.add_command(command)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EsbundleError as exc:
            emit(*flag_hint(exc).lines(), err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:
            # An unexpected error: its message may quote a credential, and a traceback would show it again.
            if settings.get(DEBUG):
                raise
            emit(f"unexpected error: {type(exc).__name__}: {exc}",
                 f"hint: set {DEBUG}=1 for a traceback, and report it", err=True)
            ctx.exit(1)


def build_group(modules: Mapping[str, str]) -> click.Group:
    """The group of `modules` (command name -> the module whose `command` it is)."""

    @click.group(cls=EsbundleGroup, modules=modules, epilog=EPILOG,
                 context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(__version__, prog_name="esbundle")
    def esbundle() -> None:
        """Carry NLP models for Elasticsearch across an air gap: export, verify, load."""

    return esbundle
