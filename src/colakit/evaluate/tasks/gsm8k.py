"""GSM8K as lm-eval's ``gsm8k_cot``: 8 chain-of-thought exemplars (Wei et al. 2022), greedy, stop at ``Q:``.

Two answers are extracted (lm-eval's filter_list): ``strict`` takes "The answer is N", ``flexible``
the last number; each is an exact match after lm-eval's ``regexes_to_ignore``. With ``--chat`` the
same 8 shots go through the tokenizer's chat template as turns."""

from __future__ import annotations

import re

from colakit.evaluate.tasks.base import ExactMatchTask, Generation, chat_prompt, register_task

# The 8 chain-of-thought exemplars of Wei et al. (2022), as lm-eval's gsm8k_cot lists them.
EXEMPLARS: tuple[tuple[str, str], ...] = (
    ("There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are "
     "done, there will be 21 trees. How many trees did the grove workers plant today?",
     "There are 15 trees originally. Then there were 21 trees after some more were planted. So there must "
     "have been 21 - 15 = 6. The answer is 6."),
    ("If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?",
     "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The answer is 5."),
    ("Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in total?",
     "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. After eating "
     "35, they had 74 - 35 = 39. The answer is 39."),
    ("Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many lollipops did "
     "Jason give to Denny?",
     "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave Denny 20 - 12 = 8. "
     "The answer is 8."),
    ("Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many toys does he have "
     "now?",
     "Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more toys. 5 + 4 = 9. "
     "The answer is 9."),
    ("There were nine computers in the server room. Five more computers were installed each day, from monday to "
     "thursday. How many computers are now in the server room?",
     "There were originally 9 computers. For each of 4 days, 5 more computers were added. So 5 * 4 = 20 "
     "computers were added. 9 + 20 is 29. The answer is 29."),
    ("Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. How many golf "
     "balls did he have at the end of wednesday?",
     "Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. After losing 2 more, "
     "he had 35 - 2 = 33 golf balls. The answer is 33."),
    ("Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
     "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has 23 - 15 dollars "
     "left. 23 - 15 is 8. The answer is 8."),
)
STOP = ("Q:", "</s>", "<|im_end|>")

_STRICT = re.compile(r"The answer is (\-?[0-9\.\,]+).")
_FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
_IGNORE = (r",", r"\$", r"(?s).*#### ", r"\.$")


def gold_chain(answer: str) -> str:
    """The reference solution in the exemplars' style: calculator notes dropped, 'The answer is N.'"""
    chain, final = answer.split("####")
    chain = re.sub(r"<<.*?>>", "", chain)
    return " ".join(line.strip() for line in chain.strip().splitlines() if line.strip()) + \
        f" The answer is {final.strip()}."


def chat_messages(question: str) -> list[dict]:
    """The same 8-shot prompt as chat turns (lm-eval's --apply_chat_template --fewshot_as_multiturn)."""
    msgs = []
    for q, a in EXEMPLARS:
        msgs += [{"role": "user", "content": f"Q: {q}\nA:"}, {"role": "assistant", "content": a}]
    return msgs + [{"role": "user", "content": f"Q: {question}\nA:"}]


def _em_normalise(text: str) -> str:
    for pattern in _IGNORE:
        text = re.sub(pattern, "", text)
    return text.strip().lower()


@register_task
class GSM8K(ExactMatchTask):
    name, capability, version, reference = "gsm8k", "Math", "1", "gsm8k_cot v3.0 (8-shot)"
    metrics, primary, max_new_tokens = ("exact_match_strict", "exact_match_flexible"), "exact_match_strict", 256

    def build(self, d):
        shots = "".join(f"Q: {q}\nA: {a}\n\n" for q, a in EXEMPLARS)
        return Generation(f"{shots}Q: {d['question']}\nA:", STOP, " " + gold_chain(d["answer"]))

    def build_chat(self, d, tokenizer):
        return Generation(chat_prompt(tokenizer, chat_messages(d["question"])), STOP, " " + gold_chain(d["answer"]))

    def extract(self, prediction):
        """{"strict": ..., "flexible": ...}: the two filters' answers (None where one finds none)."""
        strict = _STRICT.search(prediction)
        flexible = _FLEXIBLE.findall(prediction)
        last = next((g for g in flexible[-1] if g), None) if flexible else None
        return {"strict": strict.group(1) if strict else None, "flexible": last}

    def check(self, d, answer):
        gold = _em_normalise(d["answer"].split("####")[-1].strip())
        return {f"exact_match_{k}": v is not None and _em_normalise(v) == gold for k, v in answer.items()}
