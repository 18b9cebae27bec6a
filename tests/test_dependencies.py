"""pyproject.toml tells the truth: every third-party package the code imports is declared, and the code runs on
the lowest Python that `requires-python` admits."""

import ast
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

try:
    import tomllib  # novermin (3.11+; tomli, from the dev extra, on 3.10)
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _norm(name: str) -> str:  # PEP 503: PyYAML == pyyaml, hydra_core == hydra-core
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared(*extras: str) -> set[str]:
    reqs = list(PYPROJECT["dependencies"]) + [r for x in extras for r in PYPROJECT["optional-dependencies"][x]]
    return {_norm(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", r).group()) for r in reqs}


def _imports(files: list[Path]) -> dict[str, list[str]]:
    """Top-level names of absolute imports (at module top or deferred in functions) -> 'file:line' of each."""
    found: dict[str, list[str]] = {}
    for f in files:
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"), str(f))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            shown = f.relative_to(ROOT) if f.is_relative_to(ROOT) else f
            for name in names:
                found.setdefault(name.split(".")[0], []).append(f"{shown}:{node.lineno}")
    return found


def _undeclared(files: list[Path], declared: set[str], local: set[str]) -> list[str]:
    dists = importlib.metadata.packages_distributions()
    problems = []
    for top, where in sorted(_imports(files).items()):
        if top in sys.stdlib_module_names or top in local:
            continue
        provided_by = dists.get(top)
        if not provided_by and _norm(top) not in declared:  # (declared, e.g. tomli: not needed on this Python)
            problems.append(f"{where[0]}: imports '{top}', which no installed distribution provides")
        elif provided_by and not {_norm(d) for d in provided_by} & declared:
            problems.append(f"{where[0]}: imports '{top}' (distribution {', '.join(sorted(set(provided_by)))}), "
                            "not declared in pyproject.toml")
    return problems


def test_every_third_party_import_of_the_package_is_declared():
    files = sorted((ROOT / "clika").rglob("*.py")) + [ROOT / "train.py", ROOT / "eval.py"]
    assert len(files) > 50
    problems = _undeclared(files, _declared(), local={"clika"})
    assert not problems, "add to [project] dependencies, with a version range:\n" + "\n".join(problems)


def test_every_third_party_import_of_the_tests_is_declared():
    files = sorted((ROOT / "tests").rglob("*.py"))
    local = {p.stem for p in ROOT.iterdir()} | {f.stem for f in files}  # clika, bench/, conftest, helpers
    problems = _undeclared(files, _declared("dev"), local=local)
    assert not problems, "add to the dev extra (or [project] dependencies):\n" + "\n".join(problems)


def test_an_undeclared_import_fails_naming_the_module_and_the_package(tmp_path):
    mod = tmp_path / "mod.py"
    mod.write_text("import json\nimport helper\n\ndef f():\n    import yaml.loader  # deferred\n")
    assert _undeclared([mod], declared={"pyyaml"}, local={"helper"}) == []
    assert _undeclared([mod], declared=set(), local={"helper"}) == [
        f"{mod}:5: imports 'yaml' (distribution PyYAML), not declared in pyproject.toml"]


def test_the_code_runs_on_the_lowest_python_requires_python_admits():
    lowest = re.fullmatch(r">=\s*(3\.\d+)", PYPROJECT["requires-python"].strip())
    assert lowest, f"requires-python = {PYPROJECT['requires-python']!r}: expected '>=3.N'"
    vermin = Path(sys.executable).with_name("vermin")
    assert vermin.exists(), "vermin is missing: pip install -e '.[dev]'"
    r = subprocess.run([str(vermin), "--no-tips", "--violations", "--eval-annotations", f"-t={lowest[1]}-",
                        "clika", "train.py", "eval.py", "tests"], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, f"needs a newer Python than requires-python {lowest[1]}:\n{r.stdout}{r.stderr}"
