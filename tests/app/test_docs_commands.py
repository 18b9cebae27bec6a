"""The documentation's commands work ("README tested"): every `python train.py ...` / `python eval.py ...` line of a
```bash block in README.md, docs/*.md and launch/README.md composes with Hydra and passes the command-line checks
(`clika.app.checks.check_command_line`, as the entry points call it); every `make <target>` the docs name is a
Makefile target; the README's preset table gives each conf/experiment file's line-2 command. In-process, no run."""

from __future__ import annotations

import re
import shlex
import tempfile
from functools import lru_cache
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from clika.app.checks import check_command_line
from clika.app.checks.overrides import overrides_of
from clika.app.compose import CONF, compose

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "launch" / "README.md"]
APPS = {"train.py": "train", "eval.py": "eval"}

# Placeholders the docs write for paths the reader supplies: replaced by paths (never created: composing does not
# read them). Anything else in angle brackets must be listed in SKIP with a reason.
TMP = Path(tempfile.gettempdir()) / "clika-docs"
PLACEHOLDERS = {r"<run dir>": f"{TMP}/run", r"\$\{?CLIKA_DATA\}?": f"{TMP}/clika-data", r"\bOUT\b": f"{TMP}/out",
                r"\bRUN_A\b": f"{TMP}/run_a", r"\bRUN_B\b": f"{TMP}/run_b"}

# Command lines that cannot compose as written, with the reason (substring of the joined line -> reason).
SKIP: dict[str, str] = {}


def bash_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, command) of the ```bash blocks of a Markdown file, `\\` continuations joined."""
    out, inside, pending, start = [], False, "", 0
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if line.startswith("```"):
            inside, pending = line == "```bash", ""
            continue
        if not inside or not line:
            continue
        if not pending:
            start = n
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append((start, pending + line))
        pending = ""
    return out


def substitute(line: str) -> str:
    for pattern, value in PLACEHOLDERS.items():
        line = re.sub(pattern, value, line)
    return line


def app_command(line: str) -> tuple[str, list[str]] | None:
    """(app, argv after the script) of a line that runs `python train.py|eval.py` (also under srun, env VAR=...)."""
    words = shlex.split(substitute(line), comments=True)
    for i, w in enumerate(words[:-1]):
        if Path(w).name.startswith("python") and words[i + 1] in APPS:
            return APPS[words[i + 1]], words[i + 2:]
    return None


def doc_commands() -> list[tuple[str, str]]:
    """(file:line, command) of every app command line in the docs."""
    found = []
    for path in DOCS:
        for n, line in bash_lines(path):
            if app_command(line) is not None:
                found.append((f"{path.relative_to(ROOT)}:{n}", line))
    return found


def experiment_commands() -> dict[str, str]:
    """preset name -> the command on line 2 of conf/experiment/<name>.yaml (its trailing comment dropped)."""
    out = {}
    for f in sorted((CONF / "experiment").glob("*.yaml")):
        line2 = f.read_text(encoding="utf-8").splitlines()[1]
        out[f.stem] = re.split(r"\s{2,}|\s#", line2.removeprefix("#").strip())[0]
    return out


@lru_cache(maxsize=None)
def _compose(app: str, overrides: tuple[str, ...]):
    return compose(app, list(overrides))


def first_of_sweeps(overrides: list[str]) -> list[str]:
    """A multirun's overrides with each sweep (`a=1,2`, `a=range(...)`) reduced to its first value, as its
    first job composes them."""
    out = []
    for text, parsed in zip(overrides, OverridesParser.create().parse_overrides(overrides)):
        if parsed.is_sweep_override():
            value = next(iter(parsed.sweep_string_iterator()))
            text = f"{parsed.get_key_element()}={value}"
        out.append(text)
    return out


def check_composes(line: str) -> None:
    parsed = app_command(line)
    assert parsed is not None, f"not a python train.py / eval.py command: {line}"
    app, argv = parsed
    check_command_line(argv, CONF, lambda ov: _compose(app, tuple(ov)), f"{app}.py")
    overrides = overrides_of(argv)
    if "-m" in argv or "--multirun" in argv:
        overrides = first_of_sweeps(overrides)
    cfg = _compose(app, tuple(overrides))
    assert cfg.get("task") is not None, f"{app}.py {argv}: composed config has no task"


COMMANDS = doc_commands()
# The same command documented in several places is composed once (ids: its first place; the others in `where`).
UNIQUE: dict[tuple, tuple[list[str], str]] = {}
for _where, _line in COMMANDS:
    _app, _argv = app_command(_line)
    UNIQUE.setdefault((_app, *_argv), ([], _line))[0].append(_where)
CASES = [(", ".join(places), line) for places, line in UNIQUE.values()]


def test_docs_have_commands():
    """The collection itself works: the README keeps train.py and eval.py examples (`--help` shows them)."""
    where = {w.split(":")[0] for w, _ in COMMANDS}
    assert "README.md" in where and any(w.startswith("docs/") for w in where)
    readme = [c for w, c in COMMANDS if w.startswith("README.md:")]
    assert any("python train.py" in c for c in readme) and any("python eval.py" in c for c in readme)


@pytest.mark.parametrize(("where", "line"), CASES, ids=[w.split(",")[0] for w, _ in CASES])
def test_doc_command_composes(where, line):
    skipped = [reason for key, reason in SKIP.items() if key in line]
    if skipped:
        pytest.skip(skipped[0])
    leftover = re.findall(r"<[^>]*>", substitute(line.split(" #")[0]))
    assert not leftover, f"{where}: placeholder {leftover} has no substitute (PLACEHOLDERS) or SKIP reason"
    check_composes(line)


def test_skip_entries_are_live():
    """Every SKIP entry still matches a documented command (no stale exemptions)."""
    for key in SKIP:
        assert any(key in c for _, c in COMMANDS), f"SKIP entry {key!r} matches no documented command"


def test_a_broken_command_fails():
    """The check can fail: a misspelt key and an unknown preset are refused."""
    from clika.util.errors import ClikaError

    with pytest.raises(ClikaError, match="did you mean clika.langs"):
        check_composes("python eval.py clika.languages=[en,zh]")
    with pytest.raises(ClikaError, match="unknown preset"):
        check_composes("python train.py experiment=no_such_preset")


def test_readme_preset_table_matches_experiment_files():
    """One row per conf/experiment file, giving the file's line-2 command (which composes) and a wall time."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `(\w+)` \|.*$", readme, flags=re.M)}
    commands = experiment_commands()
    for name, command in commands.items():
        assert name in rows, f"README preset table has no row for conf/experiment/{name}.yaml"
        cells = [c.strip() for c in rows[name].strip("|").split("|")]
        assert f"`{command}`" in cells[1], f"README row {name}: expected `{command}` (line 2 of {name}.yaml)"
        assert len(cells) >= 3 and cells[2], f"README row {name}: no wall time (write — when none was measured)"
        check_composes(command)


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z0-9][\w.-]*)\s*:(?!=)", text, flags=re.M))


def make_invocations() -> list[tuple[str, list[str]]]:
    """(file, targets) of every `make ...` in a bash block or an inline code span of the docs."""
    found = []
    for path in DOCS:
        name = str(path.relative_to(ROOT))
        texts = [line for _, line in bash_lines(path)]
        texts += re.findall(r"`(make\s[^`]+)`", path.read_text(encoding="utf-8"))
        for text in texts:
            words = shlex.split(text, comments=True)
            if words[:1] == ["make"]:
                found.append((name, [w for w in words[1:] if "=" not in w and not w.startswith("-")]))
    return found


def test_make_targets_exist():
    targets, invocations = makefile_targets(), make_invocations()
    assert {"setup", "run", "test"} <= targets
    assert any(t == ["run"] for _, t in invocations), "the docs name `make run`"
    for where, named in invocations:
        for t in named:
            assert t in targets, f"{where}: `make {t}` is not a Makefile target ({sorted(targets)})"


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_relative_links_resolve():
    """Every relative link of the docs names an existing file, and a `#anchor` into a Markdown file one of its
    headings."""
    for path in [*DOCS, ROOT / "bench" / "README.md"]:
        for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+://", target):
                continue
            file, _, anchor = target.partition("#")
            dest = (path.parent / file).resolve() if file else path
            assert dest.exists(), f"{path.relative_to(ROOT)}: link {target} names no file"
            if anchor and dest.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", dest.read_text(encoding="utf-8"), flags=re.M)
                assert anchor in {_slug(h) for h in headings}, f"{path.relative_to(ROOT)}: no heading for #{anchor}"
