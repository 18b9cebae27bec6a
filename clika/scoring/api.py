"""Evaluation as tasks, in the spirit of lm-evaluation-harness: a task yields requests and turns their results
into metrics; `run_tasks` is the one sharded scoring path for every task of every stream.

A task (a CLiKA dataset over its languages, a custom multiple-choice set, the fictional stream) hands out
`RequestSet`s: requests plus the scorer that answers them (letter / cloze log-likelihood, or generation
judged by a pluggable judge). `run_tasks` scores every set of every task on this rank's shard, gathers once
through the caller's `gather` (rank, world and gather are arguments, so the training callback and `eval.py`
compute the same numbers), and gives each task back its own results to turn into metrics.

Sharding keeps collective ranks in lockstep: each rank gets the same number of requests (padded), the
shared-prefix forward is run by all ranks or none (decided on the whole set), and generation runs a fixed
number of steps (ZeRO-3 gathers weights in every forward). `lockstep=False` lets ranks that each hold the whole
model (eval.py's data-parallel ranks: no collective inside a forward) score their shards as one process would
(paper: equal-length prompts generated together) and meet only at the gather.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Callable, Hashable, Mapping, Protocol, Sequence

from clika.scoring.prefix import shares_prefix
from clika.scoring.loglik import Request, Result, Scorer

Gather = Callable[[Any], list]


class Stopped(Exception):
    """`score_sets` stopped between request sets because `should_stop()` said so (a preemption signal): every
    finished set is in the journal, the rest are left for a resumed run."""

    def __init__(self, scored: int, remaining: int, total: int):
        super().__init__(f"stopped with {remaining} of {total} request sets left")
        self.scored, self.remaining, self.total = scored, remaining, total


@dataclass
class RequestSet:
    key: Hashable  # unique across all tasks of one run: starts with the task's name
    scorer: Scorer
    requests: list[Request]


class Task(Protocol):
    name: str

    def request_sets(self, tokenizer) -> list[RequestSet]: ...

    def metrics(self, results: Mapping[Hashable, list[Result]]) -> dict: ...


@dataclass
class TaskOutput:
    metrics: dict
    results: dict[Hashable, list[Result]]  # per request-set key, in request order


def shard(seq: Sequence, rank: int, world: int) -> list:
    """Strided shard padded (by repeating the last element) so every rank gets the same count."""
    if world <= 1:
        return list(seq)
    per = -(-len(seq) // world)
    part = list(seq[rank::world])
    return part + [seq[-1]] * (per - len(part)) if seq else part


def unshard(parts: Sequence[Sequence], n: int) -> list:
    """Inverse of `shard`: interleave every rank's results and drop the padding."""
    world = len(parts)
    out = [None] * n
    for r, part in enumerate(parts):
        for k, res in enumerate(part):
            i = r + k * world
            if i < n:
                out[i] = res
    return out


def balanced_shards(groups: Sequence[Sequence[int]], world: int) -> list[list[int]]:
    """Whole groups (e.g. the equal-length prompts one `generate` call runs together) dealt to ranks, largest first
    to the rank holding fewest items (ties: the lower rank); each rank's indices ascending. Deterministic, so every
    rank computes every rank's share."""
    ranks: list[list[int]] = [[] for _ in range(world)]
    for g in sorted(groups, key=lambda g: (-len(g), min(g))):
        min(ranks, key=len).extend(g)
    return [sorted(r) for r in ranks]


def _plan(scorer, tokenizer, requests: Sequence[Request], world: int, lockstep_ranks: bool) -> list[list[int]] | None:
    """Each rank's request indices when the scorer groups its calls (`shard_groups`) and ranks need no lockstep:
    strided shards would split its groups and leave each rank as many calls as one process. None: strided."""
    if world <= 1 or lockstep_ranks or not hasattr(scorer, "shard_groups"):
        return None
    return balanced_shards(scorer.shard_groups(tokenizer, requests), world)


def lockstep(scorer: Scorer, tokenizer, requests: Sequence[Request], world: int) -> Scorer:
    """The scorer as every rank of a collective run must use it: prefix reuse decided on the whole set (a shard
    of prompts without BOS may share no prefix), generation for exactly its max_new_tokens steps."""
    if world <= 1:
        return scorer
    names = {f.name for f in fields(scorer)}
    changes: dict[str, Any] = {}
    if "reuse_prefix" in names:
        changes["reuse_prefix"] = scorer.reuse_prefix and shares_prefix(tokenizer, [r.context for r in requests])
    if "lockstep" in names:
        changes["lockstep"] = True
    return replace(scorer, **changes)


def score_sets(model, tokenizer, sets: Sequence[RequestSet], rank: int = 0, world: int = 1,
               gather: Gather | None = None, progress: bool = True, journal=None,
               lockstep_ranks: bool = True,
               should_stop: Callable[[], bool] | None = None) -> dict[Hashable, list[Result]]:
    """Every set scored on this rank's shard; with world > 1 one `gather` returns every rank's results.
    `progress=False`: no progress bars (inside a training loop, whose own bar they would interleave with).
    `journal` (clika.scoring.journal.Journal): sets it holds are not scored again; each set scored is recorded.
    `should_stop`: asked before every set, on every rank alike (it may be collective); True raises `Stopped`."""
    if world > 1 and gather is None:
        raise ValueError("scoring with world > 1 needs a gather function")
    local, scored = {}, 0
    plans = {s.key: _plan(s.scorer, tokenizer, s.requests, world, lockstep_ranks) for s in sets}
    for i, s in enumerate(sets):
        if should_stop is not None and should_stop():
            raise Stopped(scored, len(sets) - i, len(sets))
        done = journal.done(s.key) if journal is not None else None
        if done is not None:
            local[s.key] = done
            continue
        scorer = lockstep(s.scorer, tokenizer, s.requests, world) if lockstep_ranks else s.scorer
        if "progress" in {f.name for f in fields(scorer)}:
            scorer = replace(scorer, progress=progress)
        plan = plans[s.key]
        mine = shard(s.requests, rank, world) if plan is None else [s.requests[i] for i in plan[rank]]
        local[s.key] = scorer.score(model, tokenizer, mine)
        scored += 1
        if journal is not None:
            journal.record(s.key, local[s.key])
    if world <= 1:
        return local
    parts = gather(local)
    return {s.key: unshard([p[s.key] for p in parts], len(s.requests)) if plans[s.key] is None
            else _unplan(plans[s.key], [p[s.key] for p in parts], len(s.requests)) for s in sets}


def _unplan(plan: Sequence[Sequence[int]], parts: Sequence[Sequence], n: int) -> list:
    out = [None] * n
    for idx, part in zip(plan, parts):
        for i, res in zip(idx, part):
            out[i] = res
    return out


def run_tasks(model, tokenizer, tasks: Sequence[Task], rank: int = 0, world: int = 1,
              gather: Gather | None = None, progress: bool = True, journal=None,
              lockstep_ranks: bool = True, should_stop: Callable[[], bool] | None = None) -> dict[str, TaskOutput]:
    """Score all tasks (one gather for all of them) and compute each task's metrics on every rank."""
    sets = {t.name: t.request_sets(tokenizer) for t in tasks}
    keys = [s.key for ss in sets.values() for s in ss]
    if len(set(keys)) != len(keys):
        raise ValueError(f"request-set keys must be unique across tasks: {keys}")
    results = score_sets(model, tokenizer, [s for ss in sets.values() for s in ss], rank, world, gather, progress,
                         journal, lockstep_ranks, should_stop=should_stop)
    out = {}
    for t in tasks:
        mine = {s.key: results[s.key] for s in sets[t.name]}
        out[t.name] = TaskOutput(t.metrics(mine), mine)
    return out
