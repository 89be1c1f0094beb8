"""The connected side's commands (`keygen`, `export`, `pack`), one module each, the options they share, and
`esbundle` (the entry point), which assembles them with the offline side's commands from `loader.cli`."""
