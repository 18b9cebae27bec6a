"""The one generation loop (clika.scoring.generate): the release's protocol equals a plain copy of the release's
per-item loop (RiverGao/CLiKA inference.py) item by item, on every path (shared-prefix KV reuse or not,
lockstep); greedy is the fictional stream's loop."""

import copy

import pytest
import torch

from clika.scoring.generate import _groups, greedy, release_generate
from clika.scoring.release import ProtocolSpec
from clika.scoring.suite import Suite, suite_requests
from bench.paper_protocol import release_llama_loop as llama_model_loop  # the one plain copy of Llama_model's loop


# ---- plain copies of the release's loops (inference.py), one item per generate call, nothing shared ----
def bloomz_model_loop(model, tok, inputs):
    """Bloomz_model / Baichuan_base_model.model_inference."""
    res = []
    for input in inputs:
        out = model.generate(tok.encode(input, return_tensors="pt"), max_new_tokens=2, do_sample=False,
                             num_beams=max(2, model.generation_config.num_beams or 1))
        res.append(tok.decode(out[0]).replace(input, "").strip())
    return res


def bayling_model_loop(model, tok, inputs):
    """Bayling_model.model_inference (decoder-only branch)."""
    res = []
    for input in inputs:
        out = model.generate(tok.encode(input, return_tensors="pt"), do_sample=False, max_new_tokens=4,
                             num_beams=max(2, model.generation_config.num_beams or 1))
        n = len(tok(input, return_tensors="pt")["input_ids"][0])
        res.append(tok.decode(out[0][n:], skip_special_tokens=True, spaces_between_special_tokens=False))
    return res


def mistral_model_loop(model, tok, inputs):
    """Mistral_model.model_inference."""
    res = []
    for input in inputs:
        text = tok.apply_chat_template([{"role": "user", "content": input}], tokenize=False)
        ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        out = model.generate(ids, max_new_tokens=4, do_sample=False,
                             num_beams=max(2, model.generation_config.num_beams or 1))
        decoded = tok.batch_decode(out)[0]
        res.append(decoded.strip("<s>").strip("</s>").replace(input, "").replace("[/INST]", "")
                   .replace("[INST]", "").strip())
    return res


def prompts(data_root, ds, lang, n, tok=None):
    suite = Suite(data_root=str(data_root), datasets=[ds], langs=[lang], limit=n, seed=7)
    return [r.context for r in suite_requests(suite)[(ds, lang)]]


SPEC = ProtocolSpec.from_dict({"family": "llama", "dtype": "float32"})


# Every dataset x {en, zh}; the default suite runs two of the eight cells, the extended lane the other six.
DEFAULT_CELLS = {("en", "x_csqa"), ("zh", "x_geo")}


@pytest.mark.parametrize("lang,ds", [
    pytest.param(lang, ds, id=f"{lang}-{ds}", marks=() if (lang, ds) in DEFAULT_CELLS else pytest.mark.extended)
    for lang in ("en", "zh") for ds in ("x_copa", "x_csqa", "x_geo", "x_name")])
def test_paper_protocol_equals_the_release_loop_item_by_item(tiny, data_root, ds, lang):
    model, tok = tiny
    ps = prompts(data_root, ds, lang, 50)
    want = llama_model_loop(model, tok, ps)
    # default: shared few-shot prefix KV reused, prompts of equal token length generated together
    assert release_generate(model, tok, ps, SPEC) == want
    assert release_generate(model, tok, ps, SPEC, group_size=1) == want  # one item per call, prefix reused
    assert release_generate(model, tok, ps, SPEC, reuse_prefix=False, group_size=1) == want
    assert release_generate(model, tok, ps, SPEC, reuse_prefix=False) == want
    assert release_generate(model, tok, ps, SPEC, lockstep=True) == want
    sizes = [len(g) for g in _groups([tok(p)["input_ids"] for p in ps], 16)]
    assert max(sizes) > 1 and sum(sizes) == len(ps)  # some calls did run several items
    assert len(set(want)) > 1 or want[0]  # the tiny model does answer something


@pytest.mark.parametrize("family,loop", [("baichuan2_base", bloomz_model_loop), ("bloomz", bloomz_model_loop),
                                         ("bayling", bayling_model_loop)])
def test_output_rules_of_other_families(tiny, data_root, family, loop):
    model, tok = tiny
    ps = prompts(data_root, "x_geo", "zh", 20)
    spec = ProtocolSpec.from_dict({"family": family})
    want = loop(model, tok, ps)
    assert release_generate(model, tok, ps, spec) == want
    assert release_generate(model, tok, ps, spec, group_size=1) == want


def test_chat_family_wraps_the_prompt_and_strips_as_mistral_model(tiny, data_root):
    model, tok = tiny
    tok = copy.deepcopy(tok)
    tok.chat_template = "{{ bos_token }}{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}"
    ps = prompts(data_root, "x_copa", "en", 20)
    spec = ProtocolSpec.from_dict({"family": "mistral_instruct"})
    assert release_generate(model, tok, ps, spec) == mistral_model_loop(model, tok, ps)


def test_lockstep_runs_the_same_forward_count_per_item(tiny, data_root):
    """Several ranks under ZeRO-3 must run equal forward counts: every item runs exactly the budget."""
    model, tok = tiny
    ps = prompts(data_root, "x_name", "en", 12)
    calls = []
    h = model.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        release_generate(model, tok, ps[:1], SPEC, lockstep=True)
        one = len(calls)
        calls.clear()
        release_generate(model, tok, ps, SPEC, lockstep=True)
    finally:
        h.remove()
    # one item = its generation steps topped up to max_new_tokens; the shared prefix runs on the decoder
    assert one == SPEC.max_new_tokens and len(calls) == SPEC.max_new_tokens * len(ps)


def test_model_preset_generation_config_beams_win_when_larger(tiny, data_root):
    from clika.scoring.generate import generate_kwargs

    model, tok = tiny
    old = model.generation_config.num_beams
    try:
        model.generation_config.num_beams = 3
        assert generate_kwargs(model, tok, SPEC)["num_beams"] == 3
    finally:
        model.generation_config.num_beams = old
    assert generate_kwargs(model, tok, SPEC)["num_beams"] == 2


def test_greedy_is_the_fictional_streams_loop(tiny):
    model, tok = tiny
    ctx = ["Which continent is Astralyn located in?\n", "Solaria\n", "x"]
    a = greedy(model, tok, ctx, batch_size=2, max_new_tokens=6)
    one = [greedy(model, tok, [c], batch_size=1, max_new_tokens=6)[0] for c in ctx]
    assert a == one  # left padding does not change the tiny model's greedy continuations here
    assert greedy(model, tok, ctx, batch_size=2, max_new_tokens=6, lockstep=True) == a


def test_no_prompts_no_work(tiny):
    model, tok = tiny
    assert release_generate(model, tok, [], SPEC) == []


def test_chat_family_needs_a_chat_template(tiny):
    from clika.util.errors import ClikaError

    model, tok = tiny
    with pytest.raises(ClikaError, match="chat template"):
        release_generate(model, tok, ["Answer:"], ProtocolSpec.from_dict({"family": "mistral_instruct"}))
    assert torch.is_grad_enabled()
