"""eland's flags that belong to the connected phase: given to an offline command, a one-line pointer to where they
belong instead of click's bare "No such option". Flags eland shares with `load` (--url, --cloud-id, -u/-p,
--es-api-key, --es-model-id, --start, --clear-previous, --ca-certs, --insecure) are `load`'s own options."""
from __future__ import annotations

import click

from loader.errors import UsageError

# eland_import_hub_model's options (eland 9.2) that fetch, trace or shape the model: `esbundle export` has each.
CONNECTED_PHASE_FLAGS = frozenset({"--hub-model-id", "--hub-access-token", "--task-type", "--quantize",
                                   "--max-model-input-length", "--ingest-prefix", "--search-prefix"})


class OfflineCommand(click.Command):
    """A command of the offline phase, which points eland's connected-phase flags to `esbundle export`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as exc:
            if exc.option_name in CONNECTED_PHASE_FLAGS:
                raise UsageError(f"{exc.option_name} belongs to `esbundle export` on the connected machine, which "
                                 f"writes the bundle that `esbundle {ctx.info_name}` takes here") from None
            raise
