"""The one shared-prefix KV cache (clika.scoring.prefix.PrefixCache) of the scorers and the generation loop: every
forward on a copy of the prefix's cache gives the log-probs of a plain forward of the whole sequence, no cache."""

import pytest
import torch

from clika.scoring.prefix import PrefixCache

DEMO = "Question: Which continent is Astralyn located in?\nA. Mythosia\nB. Solaria\nAnswer:A\n\n"
ITEMS = ["Question: Where is Solaria?\nAnswer:", "Question: Name a city.\nAnswer:B",
         "Question: Which continent is the largest of all the continents in this world?\nAnswer:", "Q"]


@pytest.fixture(scope="module")
def batch(tiny):
    """The demonstration's tokens and right-paddable continuations of unequal lengths (1 to 20+ tokens)."""
    model, tok = tiny
    prefix = tok(DEMO)["input_ids"]
    suffixes = [tok(t, add_special_tokens=False)["input_ids"] for t in ITEMS]
    assert len({len(s) for s in suffixes}) == len(suffixes) and min(map(len, suffixes)) == 1
    return model, tok.pad_token_id, prefix, suffixes


def plain_log_probs(model, ids: list[int]) -> torch.Tensor:
    """fp32 log-softmax of one sequence run alone from scratch, no cache: [positions, vocab]."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0]
    return torch.log_softmax(logits.float(), -1)


def test_log_probs_of_a_batch_equal_a_no_cache_forward_of_each_sequence(batch):
    model, pad, prefix, suffixes = batch
    cached = PrefixCache(model, prefix)
    assert cached.reuse and cached.cache.get_seq_length() == len(prefix)
    plain = [plain_log_probs(model, prefix + s)[len(prefix):] for s in suffixes]
    for pc in (cached, PrefixCache(model, prefix, reuse=False)):
        logp, lens = pc.log_probs(suffixes, pad)
        assert lens == [len(s) for s in suffixes] and logp.shape[:2] == (len(suffixes), max(lens))
        for row, want in enumerate(plain):  # every real position; padding after it changes nothing
            assert (logp[row, : lens[row]] - want).abs().max() < 1e-4, (pc.reuse, row)
        last, _ = pc.log_probs(suffixes, pad, last_only=True)
        assert last.shape == (len(suffixes), logp.shape[-1])
        for row, want in enumerate(plain):
            assert (last[row] - want[-1]).abs().max() < 1e-4, (pc.reuse, row)
    assert cached.cache.get_seq_length() == len(prefix)  # the prefix's own cache is never written into
    again, _ = cached.log_probs(suffixes, pad)
    assert torch.equal(again, cached.log_probs(suffixes, pad)[0])


def test_contexts_run_once_and_continue_each_row_like_a_plain_forward(batch):
    """Cloze's use: right-padded contexts of unequal lengths in one forward, then options after each row's own
    last token (padding between masked, the row's own positions): a plain forward of each whole sequence."""
    model, pad, prefix, suffixes = batch
    cached = PrefixCache(model, prefix)
    contexts, options = [suffixes[2], suffixes[0], suffixes[3]], [suffixes[1], suffixes[3], suffixes[0]]
    ctx = cached.contexts(contexts, pad)
    assert cached.cache.get_seq_length() == len(prefix) and ctx.cache.get_seq_length() == len(prefix + suffixes[2])
    for row, c in enumerate(contexts):
        assert (ctx.next[row] - plain_log_probs(model, prefix + c)[-1]).abs().max() < 1e-4, row
    rows = [0, 0, 1, 2, 2, 1]  # a context named several times: several options after it
    conts = [options[k % 3] for k in range(len(rows))]
    logp = ctx.log_probs(rows, conts, pad)
    assert logp.shape[:2] == (len(rows), max(map(len, conts)))
    for k, (row, opt) in enumerate(zip(rows, conts)):
        want = plain_log_probs(model, prefix + contexts[row] + opt)[len(prefix + contexts[row]):]
        assert (logp[k, : len(opt)] - want).abs().max() < 1e-4, k
    assert torch.equal(ctx.log_probs(rows, conts, pad), logp)  # the contexts' cache is never written into


def test_run_gives_each_row_the_cache_of_its_whole_sequence(batch):
    """The generation loop's use: equal-length rows after the prefix, then the next token on that cache."""
    model, _, prefix, suffixes = batch
    cached = PrefixCache(model, prefix)
    assert cached.runner is not model  # the tiny Llama has a decoder: the cache-only forwards skip the LM head
    rows = [s[:4] for s in suffixes[:3]]
    nxt = [[s[4]] for s in suffixes[:3]]
    for given in (rows, [[]] * 3):
        cache = cached.run(given)
        width = len(prefix) + len(given[0])
        assert cache.get_seq_length() == width and cached.cache.get_seq_length() == len(prefix)
        with torch.no_grad():
            out = model(input_ids=torch.tensor(nxt), attention_mask=torch.ones((3, width + 1), dtype=torch.long),
                        use_cache=True, **{cached.cache_key: cache}).logits[:, -1]
        got = torch.log_softmax(out.float(), -1)
        for row in range(3):
            want = plain_log_probs(model, prefix + given[row] + nxt[row])[-1]
            assert (got[row] - want).abs().max() < 1e-4, (len(given[0]), row)
    assert cached.run([rows[0]], after_prefix=False).get_seq_length() == len(rows[0])  # from scratch


def test_no_prefix_keeps_no_cache(batch):
    model, pad, _, suffixes = batch
    empty = PrefixCache(model, [])
    assert not empty.reuse and empty.cache is None
    logp, lens = empty.log_probs(suffixes[:2], pad)
    for row, s in enumerate(suffixes[:2]):
        assert (logp[row, : lens[row]] - plain_log_probs(model, s)).abs().max() < 1e-4
