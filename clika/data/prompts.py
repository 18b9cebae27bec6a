"""Prompt rendering. `paper` reproduces the authors' few-shot prompts byte for byte.

The few-shot demonstration is a fixed prefix shared by every item of a dataset, which is what lets
the letter scorer compute it once (see clika.scoring.loglik).
"""

from __future__ import annotations

from clika.data.datasets import Item
from clika.util.errors import ClikaError

MCQ_HEADER = ("The following are multiple choice questions. "
              "Please choose the most reasonable one from the following options.\n")
COPA_HEADER = ("Answer the following multiple choice questions by selecting the correct option according to the "
               "Premise.Please choose the correct one from the two options A and B.\n")
COPA_QUESTION = {"cause": "What was the cause of this?", "effect": "What happened as a result?"}
# The single demonstration of each family; its answer line fixes the letter form ("Answer:D. 5").
DEMOS = {
    "copa": "Premise:The sky turns dark.\nQuestion:What was the cause of this?\nA. It's night.\nB. It's noon.\n"
            "Answer:A. It's night.\n\n",
    "mcq5": "Question:2+3=?\nA. 1\nB. 2\nC. 3\nD. 5\nE. 6\nAnswer:D. 5\n",
    "mcq4": "Question:2+3=?\nA. 1\nB. 2\nC. 3\nD. 5\nAnswer:D. 5\n",
    "mcq2": "Question:2+3=?\nA. 5\nB. 6\nAnswer:A. 5\n",
    "mcq3": "Question:2+3=?\nA. 1\nB. 5\nC. 6\nAnswer:B. 5\n",
}
STYLES = ("paper", "zero_shot", "chat")


def _options(item: Item) -> str:
    return "".join(f"{letter}. {text}\n" for letter, text in zip(item.letters, item.options))


def body(item: Item, family: str) -> str:
    """The item's own part of the prompt, ending with the answer cue 'Answer:'."""
    if family == "copa":
        return f"Premise:{item.question}\nQuestion:{COPA_QUESTION[item.meta['kind']]}\n{_options(item)}Answer:"
    return f"Question:{item.question}\n{_options(item)}Answer:"


def header_and_demo(item: Item, family: str) -> tuple[str, str]:
    if family == "copa":
        return COPA_HEADER, DEMOS["copa"]
    demo = DEMOS.get(f"mcq{len(item.options)}")
    if demo is None:
        raise ClikaError(f"{item.dataset}: no demonstration for {len(item.options)} options",
                         fix="use prompt_style=zero_shot for datasets with more than 5 options")
    return MCQ_HEADER, demo


def render(item: Item, family: str, style: str = "paper", tokenizer=None) -> str:
    """Full prompt text for one item in the chosen style."""
    header, demo = header_and_demo(item, family)
    if style == "paper":
        return header + demo + body(item, family)
    if style == "zero_shot":
        return header + body(item, family)
    if style == "chat":
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise ClikaError("clika.prompt_style=chat but the tokenizer has no chat template",
                             fix="use prompt_style=paper or zero_shot for base models")
        user = header + body(item, family).removesuffix("Answer:")
        return tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                             add_generation_prompt=True) + "Answer:"
    raise ClikaError(f"unknown prompt style '{style}'", fix=f"choose from {STYLES}")
