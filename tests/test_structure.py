"""The shape of the code, checked: imports run one way with no circle, the offline side never imports the connected
side or its heavy libraries, functions stay short enough to read at once, every format fact is defined once in
`loader/format/`, and every command module is registered in the one place that assembles the command line."""
from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from bundler.cli.esbundle import cli

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("loader", "bundler")
HEAVY = ("torch", "transformers", "huggingface_hub", "sentence_transformers")
MAX_FUNCTION_LINES = 50


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> Iterator[str]:
    """Every module `name` imports, at any depth of its code (a function-level import is still an import)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                # `from package import module` imports the module; `from module import name` the module itself.
                yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base


def _graph() -> dict[str, set[str]]:
    return {name: {target for target in _imports(name, path) if target in MODULES and target != name}
            for name, path in MODULES.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, as the modules along it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target):], target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_walker_sees_the_imports_it_must() -> None:
    graph = _graph()
    assert len(MODULES) > 40
    assert "loader.format.manifest" in graph["loader.bundle.verify"]
    assert "bundler.export.accents" in graph["bundler.export.pipeline"]  # `from bundler.export import accents`
    assert "loader.bundle.verify" in graph["loader.cluster.load"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_imports_one_that_imports_it_back() -> None:
    assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()) or [])


def test_the_offline_side_never_imports_the_connected_side_or_its_libraries() -> None:
    offending = sorted(f"{name} imports {target}" for name, path in MODULES.items() if name.startswith("loader")
                       for target in _imports(name, path) if target.split(".")[0] in ("bundler", *HEAVY))
    assert offending == []


def test_no_function_is_longer_than_a_screen() -> None:
    long = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {length} lines")
    assert long == []


def _top_level_names(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return {n for n in names if not n.startswith("_")}


def test_every_format_fact_is_defined_once_in_loader_format() -> None:
    format_names: dict[str, str] = {}
    for name, path in MODULES.items():
        if name.startswith("loader.format."):
            for defined in _top_level_names(path):
                assert defined not in format_names, f"{defined} is defined in {name} and {format_names[defined]}"
                format_names[defined] = name
    assert {"MANIFEST", "key_id", "label_bytes", "METADATA_KEY", "bundle_metadata", "pae"} <= set(format_names)
    twins = sorted(f"{name}.{defined} (also in {format_names[defined]})" for name, path in MODULES.items()
                   if not name.startswith("loader.format") for defined in _top_level_names(path) & set(format_names))
    assert twins == []


def test_every_command_module_is_registered_in_the_one_assembly() -> None:
    ctx = click.Context(cli)
    names = cli.list_commands(ctx)
    registered = {cli.get_command(ctx, name) for name in names}
    modules = [name for name in MODULES if name.startswith(("loader.cli.", "bundler.cli."))]
    commands = {name: getattr(importlib.import_module(name), "command", None) for name in modules}
    written = {name: c for name, c in commands.items() if isinstance(c, click.Command)}
    assert len(written) == 9
    assert [name for name, c in written.items() if c not in registered] == []
    assert sorted(names) == sorted(c.name for c in written.values())


def test_a_command_imports_only_its_own_modules() -> None:
    """`esbundle verify` must not pay for importing export's, load's and repository's modules (a third of
    openssl's time for 1 GiB, measured) nor need them installed."""
    code = ("import sys; from bundler.cli.esbundle import cli; import click; "
            "cli.get_command(click.Context(cli), 'verify'); "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith(('bundler', 'loader.cli', 'loader.cluster', "
            "'loader.repository', 'elasticsearch', 'requests')))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = done.stdout.split()
    assert "loader.cli.verify" in loaded
    assert [m for m in loaded if m.startswith(("bundler.cli.export", "bundler.export", "loader.cli.load",
                                               "loader.cluster", "loader.repository", "elasticsearch",
                                               "requests"))] == []
