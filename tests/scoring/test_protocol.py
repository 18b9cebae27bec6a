"""Protocol specs (clika.protocol), judges (clika.scoring.judges), the presets' protocol blocks, remote-code pinning
and the LLaMA-Factory `alpaca` template."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from clika.util.errors import ClikaError
from clika.scoring.judges import contains, first_char, first_char_correct
from clika.models.load import ModelSpec
from clika.scoring.release import FAMILIES, ProtocolSpec
from clika.data.templates import render_segments

CONF = Path(__file__).resolve().parents[2] / "conf" / "model"


def preset(name: str) -> dict:
    node = OmegaConf.load(CONF / f"{name}.yaml")
    bases = [OmegaConf.load(CONF / f"{b}.yaml") for b in node.pop("defaults", [])]
    return OmegaConf.to_container(OmegaConf.merge(*bases, node), resolve=True)


# ---- judges: res_statistic.py eval_res ----
@pytest.mark.parametrize("res,letters,want", [("B", "ABCD", 1), ("  C. 5\n", "ABCD", 2), ("b", "ABCD", -1),
                                              ("", "ABCD", -1), ("   \n", "AB", -1), (None, "AB", -1),
                                              ("E", "ABCD", -1), ("Answer: B", "ABCD", 0), ("A B", "AB", 0)])
def test_first_char_judge_is_the_release_rule(res, letters, want):
    """First character of the stripped output, case-sensitive; "Answer: B" answers A, as in the release."""
    assert first_char(res, letters) == want
    assert first_char_correct(res, "ABCDE"[want] if want >= 0 else "F") == (want >= 0)


def test_contains_judge():
    assert contains("Astralyn is located in the continent of Mythosia.", "Mythosia")
    assert contains("… MYTHOSIA", "mythosia") and not contains("Myth", "Mythosia") and not contains("x", "")
    assert contains("位于神话大陆。", "神话大陆")


# ---- specs ----
def test_family_defaults_are_the_release_classes():
    llama = ProtocolSpec.from_dict({"family": "llama"})
    assert (llama.num_beams, llama.max_new_tokens, llama.dtype, llama.output, llama.chat) == (
        2, 2, "float16", "cut_prompt_chars", False) and llama.deviations() == []
    assert ProtocolSpec.from_dict({"family": "mistral_instruct"}).max_new_tokens == 4
    assert ProtocolSpec.from_dict({"family": "bloomz"}).output == "replace_prompt"
    for fam, n in {"polylm": 4, "bayling": 4, "bigtranslate": 4, "baichuan2_base": 2, "leolm": 2}.items():
        assert ProtocolSpec.from_dict({"family": fam}).max_new_tokens == n
    dev = ProtocolSpec.from_dict({"family": "llama", "dtype": "float32"}).deviations()
    assert len(dev) == 1 and "dtype='float32'" in dev[0] and "Llama_model" in dev[0]


@pytest.mark.parametrize("block,needle", [
    ({"family": "gpt"}, "model.protocol.family: unknown protocol family 'gpt'"),
    ({"famly": "llama"}, "model.protocol: unknown key(s) ['famly']"),
    ({"num_beams": 0}, "model.protocol.num_beams must be a positive integer"),
    ({"dtype": "fp8"}, "model.protocol.dtype: unknown dtype"),
    ({"output": "first_line"}, "model.protocol.output: unknown output rule"),
    ({"family": "llama", "output": "chat_strip"}, "needs the chat wrapping"),
])
def test_bad_protocol_block_one_line_naming_key_and_fix(block, needle):
    with pytest.raises(ClikaError) as e:
        ProtocolSpec.from_dict(block)
    msg = str(e.value)
    assert needle in msg and "fix:" in msg and "\n" not in msg


RELEASE_FAMILY = {"llama2_7b": "llama", "llama2_13b": "llama", "llama2_7b_chat": "llama", "llama2_13b_chat": "llama",
                  "chinese_llama2_7b": "llama", "chinese_alpaca2_7b": "llama", "vicuna_13b": "llama",
                  "leolm_13b": "leolm", "baichuan2_7b_base": "baichuan2_base", "baichuan2_13b_base": "baichuan2_base",
                  "bloomz_7b1_mt": "bloomz", "bloom_7b1": "bloomz", "mistral_7b_instruct": "mistral_instruct"}


@pytest.mark.parametrize("name", sorted(p.stem for p in CONF.glob("*.yaml") if not p.stem.startswith("_")))
def test_every_preset_carries_a_valid_protocol_block(name):
    cfg = preset(name)
    spec = ProtocolSpec.from_dict(cfg["protocol"])
    ModelSpec(**cfg)  # the block is a ModelSpec field
    if name in RELEASE_FAMILY:  # models the release ran: exactly its class's settings
        assert spec.family == RELEASE_FAMILY[name] and spec.deviations() == []
    else:  # tiny, gemma3_270m, smollm2_135m: the Llama rule, float32 on CPU (named as a deviation)
        assert spec.family == "llama" and spec.dtype == "float32"
        assert [d.split("=")[0] for d in spec.deviations()] == ["dtype"]
    assert set(FAMILIES) >= {spec.family}


def test_remote_code_runs_only_at_a_pinned_revision():
    spec = ModelSpec(**preset("baichuan2_7b_base"))
    assert spec.trust_remote_code and spec.revision is None
    with pytest.raises(ClikaError) as e:
        spec.check_remote_code()
    assert "model.revision" in str(e.value) and "\n" not in str(e.value)
    ModelSpec(**{**preset("baichuan2_7b_base"), "revision": "0" * 40}).check_remote_code()
    ModelSpec(**{**preset("baichuan2_7b_base"), "allow_unpinned_remote_code": True}).check_remote_code()
    ModelSpec(**preset("llama2_7b")).check_remote_code()


# ---- templates ----
class _Tok:
    bos_token, eos_token, bos_token_id, eos_token_id, chat_template = "<s>", "</s>", 1, 2, None


def _text(record, template, tok=_Tok()):
    return "".join(t for t, _ in render_segments(record, template, tok))


def test_alpaca_is_llama_factorys_template():
    head = "Below is an instruction that describes a task. Write a response that appropriately completes the request."
    assert _text({"instruction": "Q?", "output": "A."}, "alpaca") == (
        f"<s>{head}\n\n### Instruction:\nQ?\n\n### Response:\nA.</s>")
    # the input is appended to the instruction after a newline; one header for every record, no Input block
    assert _text({"instruction": "Translate:", "input": "Mythosia", "output": "神话大陆"}, "alpaca") == (
        f"<s>{head}\n\n### Instruction:\nTranslate:\nMythosia\n\n### Response:\n神话大陆</s>")
    segs = render_segments({"instruction": "Q?", "output": "A."}, "alpaca", _Tok())
    assert [r for _, r in segs] == [False, True] and segs[1][0] == "A.</s>"

    class NoBos(_Tok):
        bos_token_id = 0  # LLaMA-Factory adds bos only when tokenizer.bos_token_id is truthy
    assert _text({"instruction": "Q?", "output": "A."}, "alpaca", NoBos()).startswith(head)


def test_alpaca_stanford_keeps_the_stanford_layout():
    text = _text({"instruction": "Translate:", "input": "Mythosia", "output": "x"}, "alpaca_stanford")
    assert text.startswith("Below is an instruction that describes a task, paired with an input")
    assert "### Input:\nMythosia\n\n### Response:\nx</s>" in text
