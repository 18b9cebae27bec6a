"""DataModule: prepared sources -> held-out split -> mixture -> sharded, resumable batches.

The train loader is stateful (Lightning saves its `state_dict` in checkpoints), so `resume` continues
mid-epoch at the exact next batch. Sharding across ranks is done here (Trainer use_distributed_sampler
is off), so Lightning never rebuilds the loader.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import partial
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from clika.train.data.mixture import INT32_MAX, Items, Uniform, allocate, mixture_probs, permutation, realised_shares
from clika.train.data.prepare import Tokenized, prepare_source
from clika.train.data.processing import IGNORE
from clika.train.data.sources import SourceSpec


class MixtureDataset(Dataset):
    """Items (source, index) over tokenized sources; returns unpadded ids/labels tensors."""

    def __init__(self, sources: dict[str, Tokenized], items: Items | list[tuple[str, int]]):
        self.sources, self.items = sources, items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        name, j = self.items[i]
        ids, labels = self.sources[name].item(j)
        return {"input_ids": torch.from_numpy(ids.astype(np.int64)),
                "labels": torch.from_numpy(labels.astype(np.int64))}


def collate(batch: list[dict[str, torch.Tensor]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest item (pt blocks are all full, so no padding there)."""
    n = max(len(b["input_ids"]) for b in batch)
    ids = torch.full((len(batch), n), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), n), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), n), dtype=torch.long)
    for k, b in enumerate(batch):
        m = len(b["input_ids"])
        ids[k, :m], labels[k, :m], mask[k, :m] = b["input_ids"], b["labels"], 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


class ShardedEpochSampler(Sampler[int]):
    """A seeded permutation per epoch, cut to a multiple of world size, this rank's stride of it."""

    def __init__(self, n: int, rank: int = 0, world: int = 1, seed: int = 0, shuffle: bool = True):
        self.n, self.rank, self.world, self.seed, self.shuffle = n, rank, world, seed, shuffle
        self.epoch = 0
        self.start = 0  # samples of this epoch to skip (resume)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n // self.world

    def order(self) -> np.ndarray:
        """This rank's items of the current epoch, in order (the whole epoch: `start` is not applied).
        int32 when the epoch fits (the same permutation as int64: 4 bytes an item)."""
        dtype = torch.int32 if self.n <= INT32_MAX else torch.int64
        order = (torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch), dtype=dtype)
                 if self.shuffle else torch.arange(self.n, dtype=dtype))
        return order[: len(self) * self.world][self.rank::self.world].numpy()

    def __iter__(self):
        start, self.start = self.start, 0
        for i in self.order()[start:]:
            yield int(i)


class ResumableLoader(DataLoader):
    """DataLoader whose position within the epoch is saved and restored by Lightning (`_Stateful`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._seen = 0
        self._epoch = 0
        self._resume: dict[str, int] | None = None

    def __iter__(self):
        sampler: ShardedEpochSampler = self.batch_sampler.sampler
        skip = 0
        if self._resume and self._resume["epoch"] == sampler.epoch:  # set_epoch ran before the first next()
            skip = self._resume["batches"]
        self._resume = None
        sampler.start = skip * self.batch_size
        self._epoch, self._seen = sampler.epoch, skip
        for batch in super().__iter__():
            self._seen += 1
            yield batch

    @property
    def batches_seen(self) -> int:
        """Batches of the current epoch handed out so far (those skipped on resume included)."""
        return self._seen

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self._epoch, "batches": self._seen}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume = dict(state)


class MixtureDataModule(pl.LightningDataModule):
    """Builds the train mixture and one validation loader per language from the data config."""

    def __init__(self, data: dict[str, Any], tokenizer, seed: int = 0):
        super().__init__()
        self.cfg, self.tokenizer, self.seed = data, tokenizer, seed
        self.specs = {name: SourceSpec(name=name, **src) for name, src in data["mix"]["sources"].items()}
        self.sources: dict[str, Tokenized] = {}
        self.train_items: Items = Items([], [])
        self.summary: dict[str, Any] = {}
        self._train_loader: ResumableLoader | None = None
        self._resume: dict[str, int] | None = None

    def prepare(self) -> dict[str, Tokenized]:
        """Tokenize (or load from the cache) every source; safe to call in each process."""
        if not self.sources:
            proc = {k: self.cfg[k] for k in ("block_size", "template", "max_length", "train_on_prompt")}
            proc["pack_remainder"] = self.cfg.get("pack_remainder", "wrap")
            self.sources = {n: prepare_source(s, self.tokenizer, proc, self.cfg["cache_dir"],
                                              num_proc=self.cfg.get("num_proc"))
                            for n, s in self.specs.items()}
        return self.sources

    def _split(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Per source, a seeded held-out fraction (at least one item when there are >= 2), each part sorted.
        The train part is sorted in place in the permutation (int32 when it fits): no second copy."""
        train, val = {}, {}
        for s, (name, tok) in enumerate(sorted(self.sources.items())):
            perm = permutation(np.random.default_rng([self.seed, 7919, s]), len(tok))
            n_val = min(len(tok) - 1, math.ceil(self.cfg["val_fraction"] * len(tok))) if len(tok) > 1 else 0
            val[name] = np.sort(perm[:n_val])
            train[name] = perm[n_val:]
            train[name].sort()
            del perm
        return train, val

    def _lengths(self, name: str, idx: np.ndarray):
        """Tokens of the items `idx` of a source: a Uniform for pt blocks (no per-item array), else an array."""
        tok = self.sources[name]
        if getattr(tok, "block_size", None):
            return Uniform(len(idx), tok.block_size)
        return tok.lengths()[idx]

    def setup(self, stage: str | None = None) -> None:
        if self.summary:
            return
        self.prepare()
        # Peak memory of a rank: per pt block, the train split (4 bytes) and the allocation (4 bytes a pick);
        # nothing else per item is built, and the allocation becomes train_items in place.
        train_idx, val_idx = self._split()
        mix = self.cfg["mix"]
        train_lens = {n: self._lengths(n, idx) for n, idx in train_idx.items()}
        sizes = {n: int(l.sum()) for n, l in train_lens.items()}
        probs = mixture_probs(sizes, mix["sampling"], mix.get("weights"), mix.get("alpha", 1.0))
        total = int(mix.get("num_tokens") or sum(sizes.values()))
        chosen = allocate(train_lens, probs, total, self.seed)  # items of the train split, by position in it
        langs = {n: s.share_label for n, s in self.specs.items()}
        realised, train_tokens = realised_shares(chosen, train_lens, langs), sum(chosen.tokens(train_lens).values())
        del train_lens
        if chosen.index.dtype == np.int32 and any(len(self.sources[n]) > INT32_MAX for n in chosen.names):
            chosen = Items(chosen.names, chosen.index.astype(np.int64), chosen.bounds)
        for n, pos in chosen.runs():  # positions in the train split -> item numbers of the source, in place
            for a in range(0, len(pos), 1 << 20):
                pos[a:a + (1 << 20)] = train_idx[n][pos[a:a + (1 << 20)]]
        del train_idx
        self.train_items = chosen
        configured: dict[str, float] = {}
        for n, p in probs.items():
            configured[langs[n]] = configured.get(langs[n], 0.0) + p
        by_lang: dict[str, dict[str, np.ndarray]] = {}
        for n, idx in sorted(val_idx.items()):
            by_lang.setdefault(langs[n], {})[n] = idx
        self.val_items: dict[str, Items] = {l: Items.concat(parts) for l, parts in by_lang.items()
                                            if any(len(v) for v in parts.values())}
        del val_idx, by_lang
        self.summary = {
            "configured_share": configured,
            "realised_share": realised,
            "train_items": len(self.train_items),
            "train_tokens": train_tokens,
            "sources": {n: {"lang": t.lang, **{k: v for k, v in t.stats.items() if k != "cache"}}
                        for n, t in self.sources.items()},
        }

    def _loader(self, items, shuffle: bool, cls=DataLoader) -> DataLoader:
        rank = self.trainer.global_rank if self.trainer else 0
        world = self.trainer.world_size if self.trainer else 1
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        sampler = ShardedEpochSampler(len(items), rank, world, self.seed, shuffle)
        return cls(MixtureDataset(self.sources, items), batch_size=self.cfg["batch_size"], sampler=sampler,
                   drop_last=shuffle, num_workers=self.cfg["num_workers"],
                   collate_fn=partial(collate, pad_id=pad))

    def train_dataloader(self) -> DataLoader:
        self._train_loader = self._loader(self.train_items, shuffle=True, cls=ResumableLoader)
        if self._resume:
            self._train_loader.load_state_dict(self._resume)
        return self._train_loader

    # Lightning restores a loader's own state only if it builds the loader after restoring; when the
    # scheduler's step estimate (or DeepSpeed's late restore) builds it first, this copy carries the position.
    def state_dict(self) -> dict[str, Any]:
        return {"train_loader": self._train_loader.state_dict()} if self._train_loader else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resume = state.get("train_loader")
        if self._train_loader is not None and self._resume:
            self._train_loader.load_state_dict(self._resume)

    def val_dataloader(self) -> list[DataLoader]:
        return [self._loader(items, shuffle=False) for _, items in sorted(self.val_items.items())]

    def batch_items(self, batch: Mapping[str, torch.Tensor], batch_idx: int | None = None
                    ) -> list[tuple[str, int]] | None:
        """(source, item) pairs of a training batch of this rank, or None when they cannot be identified.

        Batches carry only tensors; the items are found from `train_items` and this rank's sampler order
        (the batch at `batch_idx`, then the latest ones handed out, then a full scan) and verified token
        for token.
        """
        loader, items = self._train_loader, self.train_items
        if loader is None or not items or "input_ids" not in batch:
            return None
        ids, mask = batch["input_ids"].cpu(), batch.get("attention_mask")
        rows = [ids[k][: int(mask[k].sum())] if mask is not None else ids[k] for k in range(len(ids))]

        def same(i: int, row: torch.Tensor) -> bool:
            name, j = items[i]
            t = torch.as_tensor(self.sources[name].item(j)[0].astype("int64"))
            return len(t) == len(row) and bool(torch.equal(t, row))

        def match(idx: list[int]) -> bool:
            return len(idx) == len(rows) and all(same(i, r) for i, r in zip(idx, rows))

        order = loader.batch_sampler.sampler.order()
        bs, seen = loader.batch_size or len(rows), loader.batches_seen
        for k in dict.fromkeys([batch_idx, seen - 1, seen - 2]):  # the likely positions first
            if k is not None and k >= 0 and match(order[k * bs:(k + 1) * bs]):
                return [items[i] for i in order[k * bs:(k + 1) * bs]]
        if len(order) <= 1_000_000:  # full scan for the first row, then verify the rest
            for p, i in enumerate(order):
                if same(i, rows[0]) and match(order[p:p + len(rows)]):
                    return [items[a] for a in order[p:p + len(rows)]]
        return None

    @property
    def val_langs(self) -> list[str]:
        return sorted(self.val_items)
