"""Protocol specs (clika.protocol; ChatGLM: clika.scoring.glm), judges (clika.scoring.judges), the presets' protocol blocks, remote-code pinning
and the LLaMA-Factory `alpaca` template."""

from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest
import torch
from omegaconf import OmegaConf
from transformers import LogitsProcessorList

from clika.app.compose import compose
from clika.util.errors import ClikaError
from clika.scoring.judges import contains, first_char, first_char_correct
from clika.models.load import ModelSpec
from clika.scoring.generate import release_generate
from clika.scoring.glm import InvalidScore, chat_ids, item_seed
from clika.scoring.release import FAMILIES, ProtocolSpec, check_chat_template
from clika.data.templates import render_segments

CONF = Path(__file__).resolve().parents[2] / "conf" / "model"


def preset(name: str) -> dict:
    """The `model` node Hydra composes for `eval.py model=<name>` (bases and the ModelSpec defaults included)."""
    return OmegaConf.to_container(compose("eval", [f"model={name}"]).model, resolve=True)


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
                  "bloomz_7b1_mt": "bloomz", "bloom_7b1": "bloomz", "mistral_7b_instruct": "mistral_instruct",
                  "chatglm2_6b": "chatglm2", "chatglm3_6b": "chatglm3"}


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
    for name in ("chatglm2_6b", "chatglm3_6b"):  # ChatGLM is remote code too: no load without a pinned commit
        spec = ModelSpec(**preset(name))
        assert spec.trust_remote_code and spec.revision is None and spec.name_or_path == f"THUDM/{name[:8]}-6b"
        with pytest.raises(ClikaError, match="model.revision"):
            spec.check_remote_code()


# ---- ChatGLM (clika.scoring.glm): the release's Chatglm_model ----
@pytest.mark.parametrize("family,rule", [("chatglm2", "glm2_chat"), ("chatglm3", "glm3_chat")])
def test_chatglm_family_is_the_release_class(family, rule):
    """inference.py `Chatglm_model`: AutoModel.from_pretrained(torch_dtype=torch.bfloat16).half(), and
    model.chat(tokenizer, input, history=[], max_length=input_length + 20) whose own defaults (num_beams=1,
    do_sample=True, top_p=0.8, temperature=0.8) override the class's generation_config.num_beams = 2."""
    fam, spec = FAMILIES[family], ProtocolSpec.from_dict({"family": family})
    assert fam.release_class == "Chatglm_model"
    assert (spec.dtype, spec.cast, spec.num_beams, spec.max_new_tokens, spec.output, spec.chat) == (
        "bfloat16", "float16", 1, 20, rule, True) and spec.deviations() == []
    assert dict(fam.generate_kwargs) == {"do_sample": True, "top_p": 0.8, "temperature": 0.8, "top_k": 50}
    dev = ProtocolSpec.from_dict({"family": family, "cast": None, "num_beams": 2}).deviations()
    assert [d.split("=")[0] for d in dev] == ["num_beams", "cast"] and "Chatglm_model" in dev[1]
    with pytest.raises(ClikaError, match="model.protocol.cast: unknown dtype"):
        ProtocolSpec.from_dict({"family": family, "cast": "half"})
    check_chat_template(spec, _Tok())  # builds ChatGLM's prompt itself: no tokenizer chat template needed


def _glm2_chat_copy(model, tokenizer, prompt):
    """A plain copy of what the release ran: ChatGLM2's model.chat(tokenizer, prompt, history=[],
    max_length=input_length + 20) with its defaults (top_k: the GenerationConfig default of the time)."""
    input_length = len(tokenizer(prompt, return_tensors="pt")["input_ids"][0])
    inputs = tokenizer([f"[Round 1]\n\n问：{prompt}\n\n答："], return_tensors="pt")
    torch.manual_seed(item_seed(prompt))
    out = model.generate(**inputs, max_length=input_length + 20, num_beams=1, do_sample=True, top_p=0.8,
                         temperature=0.8, top_k=50, logits_processor=LogitsProcessorList([InvalidScore()]))
    new = out.tolist()[0][len(inputs["input_ids"][0]):]
    return tokenizer.decode(new).strip().replace("[[训练时间]]", "2023年").strip(), len(new)


def test_chatglm2_rule_equals_a_plain_copy_of_its_chat_on_tiny(tiny):
    model, tok = tiny
    spec = ProtocolSpec.from_dict({"family": "chatglm2", "cast": None})  # tiny stays float32 (shared fixture)
    prompts = ["Question:2+3=?\nA. 1\nB. 5\nAnswer:", "Premise:The sky turns dark.\nAnswer:", "问题：天空？\n答案："]
    got = release_generate(model, tok, prompts, spec)
    for p, g in zip(prompts, got):
        want, n_new = _glm2_chat_copy(model, tok, p)
        overhead = len(chat_ids(tok, p, spec)) - len(tok(p)["input_ids"])
        assert g == want and 1 <= n_new <= 20 - overhead  # 20 tokens over the unwrapped prompt, less the template's
    assert release_generate(model, tok, prompts[::-1], spec) == got[::-1]  # seeded per prompt: order-free
    assert chat_ids(tok, prompts[0], spec) == tok("[Round 1]\n\n问：" + prompts[0] + "\n\n答：")["input_ids"]
    with pytest.raises(ClikaError, match="lockstep"):
        release_generate(model, tok, prompts, spec, lockstep=True)


class _GlmTok:
    """A ChatGLM3-like tokenizer: one id per character, the command tokens above them, eos 2 decoded as ''."""
    eos_token_id, unk_token_id, chat_template = 2, 0, None
    commands: ClassVar[dict] = {"[gMASK]": 1000, "sop": 1001, "<|user|>": 1002, "<|assistant|>": 1003,
                                "<|observation|>": 1004}

    def convert_tokens_to_ids(self, t):
        return self.commands.get(t, self.unk_token_id)

    def encode(self, s, add_special_tokens=True):
        return [ord(c) for c in s]

    def __call__(self, s):
        return {"input_ids": [1000, 1001, *self.encode(s)]}

    def decode(self, ids):
        names = {v: k for k, v in self.commands.items()}
        return "".join(names.get(i, "" if i == 2 else chr(i)) for i in ids)


class _FakeGlm(torch.nn.Module):
    """Records generate's arguments and answers with scripted new ids."""

    def __init__(self, new):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1, dtype=torch.bfloat16))
        self.generation_config, self.new, self.calls = SimpleNamespace(eos_token_id=2, num_beams=1), new, []

    def generate(self, input_ids, **kw):
        self.calls.append({"ids": input_ids[0].tolist(), **kw})
        return torch.cat([input_ids, torch.tensor([self.new])], dim=1)


@pytest.mark.parametrize("new,want", [
    ([ord(c) for c in "\n A. It was fragile."] + [2], "A. It was fragile."),  # EOS dropped by [:-1]
    ([ord(c) for c in "\nB. I"], "B."),  # at the length limit [:-1] drops a real token, as the release
    ([ord(c) for c in "\n[[训练时间]]"] + [2], "2023年"),
    ([ord(c) for c in "\nA"] + [1003] + [ord(c) for c in "\n B"] + [2], "B"),  # the last <|assistant|> part wins
])
def test_chatglm3_prompt_generation_and_response(new, want):
    tok, model = _GlmTok(), _FakeGlm(new)
    spec = ProtocolSpec.from_dict({"family": "chatglm3"})
    prompt = "Q?\nAnswer:"
    assert release_generate(model, tok, [prompt], spec) == [want]
    call = model.calls[0]
    assert call["ids"] == [1000, 1001, 1002, ord("\n"), *map(ord, prompt), 1003]  # build_chat_input
    raw, chat = len(tok(prompt)["input_ids"]), len(call["ids"])
    assert call["max_new_tokens"] == raw + 20 - chat and call["num_beams"] == 1 and call["do_sample"]
    assert call["eos_token_id"] == [2, 1002, 1004]  # eos, <|user|>, <|observation|>
    assert [type(p).__name__ for p in call["logits_processor"]] == [
        "InvalidScore", "TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper"]
    assert model.w.dtype == torch.float16  # bfloat16 weights, then .half()


def test_chatglm3_needs_its_command_tokens_and_its_own_template(tiny):
    model, tok = tiny
    with pytest.raises(ClikaError, match="the tokenizer has no '<\\|user\\|>' token"):
        release_generate(model, tok, ["Q?"], ProtocolSpec.from_dict({"family": "chatglm3", "cast": None}))

    class Remote(_GlmTok):  # a revision whose build_chat_input differs from the template reproduced here
        def build_chat_input(self, query, history=None, role="user"):
            return {"input_ids": torch.tensor([[1000, 1001, 1002, *self.encode(query), 1003]])}
    with pytest.raises(ClikaError, match="own chat prompt differs"):
        release_generate(_FakeGlm([2]), Remote(), ["Q?"], ProtocolSpec.from_dict({"family": "chatglm3"}))

    class Same(_GlmTok):
        def build_chat_input(self, query, history=None, role="user"):
            return {"input_ids": torch.tensor([[1000, 1001, 1002, 10, *self.encode(query), 1003]])}
    assert release_generate(_FakeGlm([ord("\n"), ord("A"), 2]), Same(), ["Q?"],
                            ProtocolSpec.from_dict({"family": "chatglm3"})) == ["A"]


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
