"""One source of truth for the fictional world: the embedded training corpora and the probes that test them
come from the same world config and cache key, so editing a name table rebuilds both."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from clika.fictional.generated import WORLD_DEFAULTS, world_params

ROOT = Path(__file__).resolve().parents[2]

# Run in a fresh interpreter whose `clika` may be an edited copy: prints both caches and what they hold.
PROBE = r"""
import json, sys
from clika.fictional.generated import corpus_file, generated_root, world_key
from clika.fictional.layout import load_fictional
from clika.train.data.sources import SourceSpec, load_records

cache = sys.argv[1]
spec = SourceSpec(name="de", lang="de", schema="pt", format="embedded", path="fictional_pt")
root = generated_root({}, cache + "/fictional")
continents = sorted({it.continent for it in load_fictional(root, "de")})
corpus = " ".join(r["text"] for r in load_records(spec, cache))
print(json.dumps({"key": world_key({}), "probe_root": str(root), "corpus": str(corpus_file("fictional_pt", "de", {}, cache)),
                  "tokenized_key": spec.fingerprint(), "continents": continents,
                  "corpus_names_them": all(k in corpus for k in continents)}))
"""


def _caches(src: Path, cache: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(ROOT)])}
    out = subprocess.run([sys.executable, "-c", PROBE, str(cache)], env=env, cwd=src, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_editing_a_name_table_rebuilds_the_probe_and_the_training_corpus(tmp_path):
    original = tmp_path / "original"
    edited = tmp_path / "edited"
    for dst in (original, edited):
        shutil.copytree(ROOT / "clika", dst / "clika", ignore=shutil.ignore_patterns("__pycache__"))
    names = edited / "clika" / "fictional" / "names.py"
    text = names.read_text(encoding="utf-8")
    old = 'CONTINENT_ONSETS = ("d", "l", "m", "n", "r", "s", "t", "v")'
    assert old in text
    names.write_text(text.replace(old, 'CONTINENT_ONSETS = ("v", "t", "s", "r", "n", "m", "l", "d")'), encoding="utf-8")

    cache = tmp_path / "cache"
    a, b = _caches(original, cache), _caches(edited, cache)
    assert a["key"] != b["key"]
    assert a["probe_root"] != b["probe_root"] and a["corpus"] != b["corpus"]
    assert a["tokenized_key"] != b["tokenized_key"]  # the tokenized training data is keyed by the world too
    assert a["continents"] != b["continents"]
    assert a["corpus_names_them"] and b["corpus_names_them"]  # each corpus teaches the continents its probe asks


def test_world_defaults_are_defined_once():
    assert world_params(None) == world_params({}) == {**WORLD_DEFAULTS, "translate_directions": ["x2en", "en2x"]}
    conf = (ROOT / "conf" / "fictional" / "default.yaml").read_text(encoding="utf-8")
    assert "world: {}" in conf  # the config defers to clika.fictional.generated.WORLD_DEFAULTS
