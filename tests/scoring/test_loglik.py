import pytest
import torch

from clika.data.datasets import REGISTRY, load_parallel
from clika.util.errors import ClikaError
from clika.data.prompts import render
from clika.scoring.judges import first_letter
from clika.scoring.loglik import ClozeScorer, LetterScorer, PaperScorer, Request, make_scorer


@pytest.fixture(scope="module")
def requests_zh(data_root):
    items = load_parallel(data_root, "x_csqa", ["zh"])["zh"][:24]
    return [Request(it.uid, render(it, REGISTRY["x_csqa"].template), it.letters, it.options, it.label) for it in items]


def _full_forward_letter_logprobs(model, tok, req):
    ids = tok(req.context)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1].float()
    logp = torch.log_softmax(logits, -1)
    return [float(logp[tok(req.context + l)["input_ids"][-1]]) for l in req.letters]


def test_letter_matches_plain_forward_and_is_batch_invariant(tiny, requests_zh):
    model, tok = tiny
    one = LetterScorer(batch_size=1).score(model, tok, requests_zh)
    many = LetterScorer(batch_size=16).score(model, tok, requests_zh)
    no_cache = LetterScorer(batch_size=16, reuse_prefix=False).score(model, tok, requests_zh)
    for a, b, c in zip(one, many, no_cache):
        assert a.uid == b.uid and a.pred == b.pred == c.pred
        assert max(abs(x - y) for x, y in zip(a.scores, b.scores)) < 1e-4
        assert max(abs(x - y) for x, y in zip(a.scores, c.scores)) < 1e-4
    ref = _full_forward_letter_logprobs(model, tok, requests_zh[3])
    assert max(abs(x - y) for x, y in zip(ref, one[3].scores)) < 1e-4
    assert all(r.pred == max(range(5), key=r.scores.__getitem__) for r in one)


def test_cloze_is_batch_invariant_and_byte_normalised(tiny, requests_zh):
    model, tok = tiny
    one = ClozeScorer(batch_size=1).score(model, tok, requests_zh[:8])
    many = ClozeScorer(batch_size=16).score(model, tok, requests_zh[:8])
    for a, b in zip(one, many):
        assert max(abs(x - y) for x, y in zip(a.scores, b.scores)) < 1e-4
    req = requests_zh[0]
    ids = tok(req.context)["input_ids"]
    cont = tok(req.options[1], add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids + cont])).logits[0].float(), -1)
    total = sum(float(logp[len(ids) - 1 + k, t]) for k, t in enumerate(cont))
    assert abs(total / len(req.options[1].encode("utf-8")) - one[0].scores[1]) < 1e-4


def test_cloze_context_once_per_item_equals_one_row_per_option(tiny, requests_zh):
    """Running each context once and then only its options gives the per-row log-probs (same tokens)."""
    model, tok = tiny
    per_context = ClozeScorer(batch_size=3).score(model, tok, requests_zh[:10])  # options span two batches
    per_row = ClozeScorer(batch_size=16, reuse_context=False).score(model, tok, requests_zh[:10])
    no_cache = ClozeScorer(batch_size=16, reuse_prefix=False).score(model, tok, requests_zh[:10])
    for a, b, c in zip(per_context, per_row, no_cache):
        assert a.pred == b.pred == c.pred
        assert max(abs(x - y) for x, y in zip(a.scores, b.scores)) < 1e-5
        assert max(abs(x - y) for x, y in zip(a.scores, c.scores)) < 1e-5


def test_paper_protocol_uses_first_character_rule(tiny, requests_zh):
    model, tok = tiny
    res = PaperScorer(batch_size=4).score(model, tok, requests_zh[:4])
    for r in res:
        first = first_letter(r.output)
        assert isinstance(r.output, str) and r.pred == ("ABCDE".index(first) if first and first in "ABCDE" else -1)
    assert first_letter("  C. hospital") == "C" and first_letter("") == "" and first_letter(None) == ""


def test_multi_token_letter_is_a_clear_error(tiny, requests_zh):
    model, tok = tiny
    bad = [Request("x", requests_zh[0].context, "AB", ["1", "2"], 0)]
    with pytest.raises(ClikaError, match="not one token"):
        LetterScorer(delimiter=" ·").score(model, tok, bad)
    with pytest.raises(ClikaError, match="unknown protocol"):
        make_scorer("nope")


class _Captured(Exception):
    pass


@pytest.mark.parametrize("scorer, circular", [("letter", False), ("cloze", False), ("paper", False),
                                              ("letter", True)])
def test_log_probs_do_not_depend_on_the_number_of_ranks(tiny, data_root, scorer, circular):
    """Each rank scores its padded shard; gathered and unsharded, per-item log-probs equal one rank's."""
    from clika.scoring.suite import Suite, load_suite_items, suite_tasks
    from clika.scoring.api import score_sets

    model, tok = tiny
    suite = Suite.from_dict({"data_root": str(data_root), "datasets": ["x_copa", "x_csqa"], "langs": ["en", "ja"],
                             "limit": 7, "protocol": scorer, "batch_size": 4, "circular": circular})
    sets = [s for t in suite_tasks(suite, load_suite_items(suite)) for s in t.request_sets(tok)]
    one = score_sets(model, tok, sets)
    for world in (2, 3):
        parts = []
        for rank in range(world):  # what each rank computes before the collective
            def grab(local):
                parts.append(local)
                raise _Captured
            with pytest.raises(_Captured):
                score_sets(model, tok, sets, rank, world, grab)
        gathered = score_sets(model, tok, sets, 0, world, lambda local: parts)
        for key, results in one.items():
            assert [r.uid for r in gathered[key]] == [r.uid for r in results]
            for a, b in zip(results, gathered[key]):
                assert a.pred == b.pred and a.output == b.output, (world, key)  # paper: lockstep, same res
                assert max((abs(x - y) for x, y in zip(a.scores, b.scores)), default=0.0) < 1e-4, (world, key)


def test_progress_is_an_argument_not_an_environment_variable(monkeypatch, tiny):
    """The task runner sets the scorers' progress bars (the training callback passes progress=False)."""
    from clika.scoring.loglik import _progress
    from clika.scoring.api import RequestSet, score_sets

    monkeypatch.delenv("CLIKA_PROGRESS", raising=False)
    assert all(make_scorer(n).progress for n in ("letter", "cloze"))
    seen = []

    class Spy(LetterScorer):
        def score(self, model, tokenizer, requests):
            seen.append(self.progress)
            return []

    for progress in (True, False):
        score_sets(*tiny, [RequestSet("k", Spy(), [])], progress=progress)
    assert seen == [True, False]
    assert _progress(500, "x").disable is False and _progress(500, "x", enabled=False).disable is True
    assert _progress(10, "x").disable is True  # short calls never show a bar
