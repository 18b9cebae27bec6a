import json

import pytest

from clika.data import registry
from clika.data.datasets import REGISTRY, load_parallel
from clika.util.errors import ClikaError
from clika.util.languages import LANGS
from clika.data.prompts import render


def test_paper_prompts_byte_for_byte(data_root):
    """Every one of the authors' 18,800 prompts is reproduced exactly, with the same uuid and label."""
    n = 0
    for ds in ("x_copa", "x_csqa", "x_geo", "x_name"):
        by_lang = load_parallel(data_root, ds, list(LANGS))
        for lang, items in by_lang.items():
            path = registry.get(ds).prompts_file(data_root, lang)
            rows = [json.loads(l) for l in path.read_text(encoding="utf-8").splitlines()]
            assert len(rows) == len(items)
            for item, row in zip(items, rows):
                assert render(item, REGISTRY[ds].template) == row["input"], (ds, lang, item.uid)
                assert str(row["uuid"]) == item.uid and row["label"] == item.letters[item.label]
                n += 1
    assert n == 18800


def test_zero_shot_and_chat_styles(data_root, tiny):
    item = load_parallel(data_root, "x_csqa", ["en"])["en"][0]
    zero = render(item, "mcq", "zero_shot")
    assert zero.startswith("The following are") and "2+3=?" not in zero and zero.endswith("Answer:")
    with pytest.raises(ClikaError, match="no chat template"):
        render(item, "mcq", "chat", tiny[1])

    import copy

    tok = copy.deepcopy(tiny[1])  # a real tokenizer given a real Jinja chat template
    tok.chat_template = "{% for m in messages %}<user>{{ m['content'] }}</user>{% endfor %}<bot>"
    chat = render(item, "mcq", "chat", tok)
    assert chat.startswith("<user>The following") and chat.endswith("</user><bot>Answer:")
