"""The offline side's commands, one module each (`verify`, `inspect`, `copy`, `load`, `status`), the options they
share, and the group with its single error boundary. `bundler.cli.esbundle` assembles every command into `esbundle`.

Thin: parse, call one library function, format what it returns. Results on stdout, progress and errors on stderr.
"""
