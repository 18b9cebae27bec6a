"""`clika.batch_size` governs every protocol (#22 item 5): the number of sequences per forward for letter and cloze,
the number of equal-length prompts per `generate` call for paper; the outputs do not depend on it (paper's strings
identical, cloze's scores to float rounding), and ranks that need no lockstep keep paper's grouping."""

import pytest

from clika.scoring.api import RequestSet, score_sets
from clika.scoring.generate import _groups, prompt_ids
from clika.scoring.loglik import ClozeScorer, LetterScorer, PaperScorer
from clika.scoring.suite import Suite, suite_requests


@pytest.fixture(scope="module")
def requests(data_root):
    suite = Suite(data_root=str(data_root), datasets=["x_geo"], langs=["en"], limit=40, seed=7)
    return suite_requests(suite)[("x_geo", "en")]


class _Calls:
    """Counts a module's forwards (or `generate` calls) and the rows each one ran."""

    def __init__(self, model, monkeypatch=None):
        self.rows: list[int] = []
        if monkeypatch is None:
            self._h = model.register_forward_pre_hook(self._hook, with_kwargs=True)
        else:
            generate = model.generate
            monkeypatch.setattr(model, "generate", lambda *a, **kw: self._note(kw["input_ids"]) or generate(*a, **kw))

    def _note(self, ids):
        self.rows.append(ids.shape[0])

    def _hook(self, _module, args, kwargs):
        self._note(kwargs["input_ids"] if "input_ids" in kwargs else args[0])

    def close(self):
        self._h.remove()


def test_paper_groups_at_most_batch_size_equal_length_prompts_with_identical_strings(tiny, requests, monkeypatch):
    model, tok = tiny
    lengths = [len(prompt_ids(tok, r.context, PaperScorer().spec)) for r in requests]
    assert max(lengths.count(n) for n in lengths) >= 3  # some length shared by more prompts than batch size 2
    outputs = {}
    for bs in (1, 2, 16):
        with monkeypatch.context() as m:
            calls = _Calls(model, m)
            outputs[bs] = [r.output for r in PaperScorer(batch_size=bs, progress=False).score(model, tok, requests)]
        want = [len(g) for g in _groups([[0] * n for n in lengths], bs)]
        assert sorted(calls.rows) == sorted(want) and max(calls.rows) == min(bs, max(want)), bs
    assert len(calls.rows) < len(requests)  # batch 16: several items per generate call
    assert outputs[1] == outputs[2] == outputs[16]


def test_cloze_runs_batch_size_contexts_per_forward_with_the_same_scores(tiny, requests):
    model, tok = tiny
    results, forwards = {}, {}
    for bs in (1, 4, 16):
        calls = _Calls(model)
        try:
            results[bs] = ClozeScorer(batch_size=bs, progress=False).score(model, tok, requests)
        finally:
            calls.close()
        forwards[bs] = calls.rows  # the shared prefix runs once on the decoder alone: not counted here
        assert max(forwards[bs]) == bs, bs  # contexts, then option rows, bs at a time
    n, rows = len(requests), sum(len(r.options) for r in requests)
    assert len(forwards[1]) == n + rows  # batch 1: each context alone, then each option alone
    assert len(forwards[16]) < len(forwards[4]) < len(forwards[1]) / 3
    assert sum(forwards[16]) == n + rows  # every context and every option run once
    for a, b, c in zip(results[1], results[4], results[16]):
        assert a.pred == b.pred == c.pred
        assert max(abs(x - y) for x, y in zip(a.scores, c.scores)) < 1e-4
        assert max(abs(x - y) for x, y in zip(a.scores, b.scores)) < 1e-4
    per_row = ClozeScorer(batch_size=16, reuse_context=False, progress=False).score(model, tok, requests)
    for a, b in zip(results[16], per_row):  # options after each padded context's own last token = whole rows
        assert max(abs(x - y) for x, y in zip(a.scores, b.scores)) < 1e-4


def test_letter_runs_batch_size_prompts_per_forward(tiny, requests):
    model, tok = tiny
    for bs in (1, 4, 16):
        calls = _Calls(model)
        try:
            LetterScorer(batch_size=bs, progress=False).score(model, tok, requests)
        finally:
            calls.close()
        assert calls.rows == [min(bs, len(requests) - k) for k in range(0, len(requests), bs)], bs


def test_ranks_without_lockstep_keep_papers_groups_and_give_one_process_results(tiny, requests, monkeypatch):
    """eval.py's ranks each hold the whole model (lockstep_ranks=False): a rank generates its shard's equal-length
    prompts together, and the gathered strings are those of one process; with lockstep, one item per call."""
    model, tok = tiny
    sets = [RequestSet(("paper", "x_geo", "en"), PaperScorer(batch_size=16), requests)]
    one = score_sets(model, tok, sets, progress=False)[sets[0].key]
    for lockstep_ranks in (False, True):
        parts, calls = [], []
        for rank in range(2):
            with monkeypatch.context() as m:
                c = _Calls(model, m)
                score_sets(model, tok, sets, rank, 2, lambda local: parts.append(local) or [local],
                           progress=False, lockstep_ranks=lockstep_ranks)
            calls.append(c.rows)
        gathered = score_sets(model, tok, sets, 0, 2, lambda local: parts, progress=False,
                              lockstep_ranks=lockstep_ranks)[sets[0].key]
        assert [r.output for r in gathered] == [r.output for r in one]
        per_rank = -(-len(requests) // 2)
        if lockstep_ranks:
            assert all(rows == [1] * per_rank for rows in calls)
        else:  # whole equal-length groups per rank: the one-process calls split between the ranks, not repeated
            groups = PaperScorer(batch_size=16).shard_groups(tok, requests)
            assert sum(map(sum, calls)) == len(requests) and sum(map(len, calls)) == len(groups)
            assert all(abs(sum(rows) - len(requests) / 2) <= max(map(len, groups)) for rows in calls)


def test_balanced_shards_deal_whole_groups_and_cover_every_item_once():
    from clika.scoring.api import balanced_shards

    groups = [[0, 3, 5], [1], [2, 4], [6, 7, 8, 9]]
    parts = balanced_shards(groups, 2)
    assert parts == [[1, 6, 7, 8, 9], [0, 2, 3, 4, 5]]  # 4 | 3, 2 | then 1 to the lighter rank
    assert sorted(i for p in parts for i in p) == list(range(10))
    assert balanced_shards([[0], [1]], 3) == [[0], [1], []]  # a rank without items still takes part
