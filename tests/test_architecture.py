"""The library imports nothing upward: no module of clika/{util,data,scoring,metrics,models,report,fictional} imports
the app rooms (clika.app, clika.train, clika.eval) or the frameworks only they use (Lightning, Hydra, OmegaConf), at
module level or inside a function (DEVELOPERS.md: the library never imports upward)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ("util", "data", "scoring", "metrics", "models", "report", "fictional")
FORBIDDEN = ("clika.app", "clika.train", "clika.eval", "lightning", "pytorch_lightning", "hydra", "omegaconf")


def imported_modules(path: Path, root: Path = ROOT) -> list[tuple[int, list[str]]]:
    """(line, the absolute module names it may import) of every import statement of the file, relative imports
    resolved: `from clika import app` may import the module clika.app."""
    package = ".".join(path.relative_to(root).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, [alias.name]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = parts[: len(parts) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.append((node.lineno, [module, *(f"{module}.{alias.name}" for alias in node.names)]))
    return found


def is_forbidden(module: str) -> bool:
    return any(module == f or module.startswith(f + ".") for f in FORBIDDEN)


def upward_imports(files, root: Path = ROOT) -> list[str]:
    """`<file>:<line>: imports <module>` for every import of a forbidden module."""
    out = []
    for path in files:
        for line, names in imported_modules(path, root):
            bad = [n for n in names if is_forbidden(n)]
            if bad:
                out.append(f"{path.relative_to(root)}:{line}: imports {bad[0]}")
    return sorted(out)


def test_the_library_imports_no_app_room_and_no_framework():
    files = [p for room in LIBRARY for p in sorted((ROOT / "clika" / room).rglob("*.py"))]
    assert len(files) > 20, files  # the rooms are where this test looks
    offending = upward_imports(files)
    assert not offending, "the library imports upward:\n" + "\n".join(offending)


@pytest.mark.parametrize("source,bad", [
    ("import omegaconf\n", True),
    ("def f():\n    from hydra.utils import instantiate\n", True),
    ("from ..app import checks\n", True),  # relative, from clika/models/x.py
    ("from clika import train\n", True),
    ("from lightning.pytorch import Trainer\n", True),
    ("import hydrant\nfrom clika.util.errors import ClikaError\nfrom . import tiny\n", False),
])
def test_the_walk_finds_every_form_of_import(tmp_path, source, bad):
    f = tmp_path / "clika" / "models" / "x.py"
    f.parent.mkdir(parents=True)
    f.write_text(source)
    assert bool(upward_imports([f], root=tmp_path)) is bad
