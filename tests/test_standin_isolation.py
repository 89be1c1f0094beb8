"""The stand-in is the independent judge of what the product uploads: nothing under tests/standin/ reads the
product, neither by import nor by path. A judge that imported `loader` or read `loader/data/` would mirror a wrong
edit there, and every test would still pass.

Checked on the syntax tree of every tests/standin/*.py: imports (at any depth, `import x`, `from x import y`,
`importlib.import_module("x")`, `__import__("x")`), and every string literal that is not a docstring (a path
naming `loader` or `bundler` as a component, a dotted module name starting with them, a path built with `/` from a
literal `loader`, `bundler` or `data` component). Docstrings are prose, not paths, and are left out.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

STANDIN = Path(__file__).resolve().parent / "standin"
PRODUCT = ("loader", "bundler")
# A path naming a product package as a component: "loader", "loader/data", "../bundler/x", "a\\loader\\b".
PATH_COMPONENT = re.compile(r"(^|[/\\])(loader|bundler)([/\\]|$)")
# A dotted module name: "loader", "loader.releases.libtorch", "bundler.cli".
MODULE_NAME = re.compile(r"^(loader|bundler)(\.[A-Za-z_][\w.]*)?$")
PATH_PARTS = {"loader", "bundler", "data"}


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the Constant nodes that are docstrings (module, class, function)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                found.add(id(first.value))
    return found


def _imported_modules(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                yield node.lineno, node.args[0].value


def _path_joins(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """`something / "loader" / "data"`: a `/` whose right operand is a literal product or data component."""
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and isinstance(node.right, ast.Constant) \
                and isinstance(node.right.value, str) and node.right.value.strip("/\\") in PATH_PARTS:
            yield node.lineno, f'... / "{node.right.value}"'


def offences(source: str, name: str = "<source>") -> list[str]:
    """Every way this module's code names the product, one line each."""
    tree = ast.parse(source)
    found = [f"{name}:{line}: imports {module}" for line, module in _imported_modules(tree)
             if module.split(".")[0] in PRODUCT]
    docstrings = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            text = node.value.strip()
            if PATH_COMPONENT.search(text) or MODULE_NAME.match(text):
                found.append(f"{name}:{node.lineno}: string literal {node.value!r} names the product")
    found += [f"{name}:{line}: path joined with {what}" for line, what in _path_joins(tree)]
    return sorted(set(found))


def test_nothing_under_the_standin_reads_the_product() -> None:
    sources = sorted(STANDIN.glob("*.py"))
    assert len(sources) > 10 and STANDIN / "releases.py" in sources
    found = [line for path in sources for line in offences(path.read_text(encoding="utf-8"), path.name)]
    assert found == [], "\n".join(found)


def test_the_scanner_catches_each_way_of_reading_the_product() -> None:
    caught = {
        "import loader.releases.libtorch": "imports loader.releases.libtorch",
        "from bundler.cli import esbundle": "imports bundler.cli",
        "import importlib\nm = importlib.import_module('loader.releases')": "imports loader.releases",
        "m = __import__('bundler')": "imports bundler",
        "from pathlib import Path\nDATA = Path(__file__).parents[2] / 'loader' / 'data'": "path joined with",
        "p = 'loader/data/es_model_ops.json'": "names the product",
        "p = '../../bundler/keys.py'": "names the product",
        "from importlib import resources\nr = resources.files('loader')": "names the product",
        "def f():\n    import loader\n": "imports loader",
    }
    for source, expected in caught.items():
        assert any(expected in line for line in offences(source)), source
    clean = ['"""Judges what `loader/` uploads; never reads loader/data."""\nimport json\n',
             "from . import releases\nfrom .releases import Release\n",
             "x = 'the loader uploads parts'\ny = Path('a') / 'release_facts.json'\n"]
    for source in clean:
        assert offences(source) == [], source
