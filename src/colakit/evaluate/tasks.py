"""The task registry: every evaluation task as data.

A task says how to turn one raw record (``colakit.data.evalsets.load_items``) into what the model
sees, how to score it, which capability it measures and which version of those rules it is.
Prompt formats and metrics follow lm-evaluation-harness 0.4.x (the task YAMLs named in each
entry), so numbers compare with what the field reports:

- multiple choice: ``acc`` = argmax of summed log-likelihood; ``acc_norm`` = argmax of
  log-likelihood / character length of the choice (lm-eval's ``len(choice)``; for ASCII choices
  this is the byte length); ``acc_bytes`` divides by the UTF-8 byte length;
- WinoGrande uses partial scoring: each option fills the blank to make a *context*, and the
  shared text after the blank is the continuation that is scored;
- MMLU is 0-shot (lm-eval's default ``mmlu`` task), with the per-subject description line;
  per-subject and macro (mean over subjects) accuracy are reported;
- GSM8K is ``gsm8k_cot``: 8 chain-of-thought exemplars (Wei et al. 2022), greedy, stop at
  ``Q:``; ``strict`` takes "The answer is N", ``flexible`` the last number;
- HumanEval / MBPP are pass@1 with greedy decoding, executed in ``colakit.evaluate.sandbox``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from colakit.errors import ColakitError
from colakit.evaluate.power import quick_sizes

CAPABILITIES = ("LM", "Commonsense", "Knowledge", "Math", "Code", "Multilingual")


@dataclass(frozen=True)
class MultipleChoice:
    """One rendered multiple-choice item: request i scores ``continuations[i]`` after ``contexts[i]``."""

    contexts: list[str]
    continuations: list[str]
    choices: list[str]  # the texts whose length normalises acc_norm (lm-eval's doc_to_choice)
    gold: int


@dataclass(frozen=True)
class Generation:
    prompt: str
    stop: tuple[str, ...]
    gold_text: str  # reference continuation: its log-likelihood and bits per byte are recorded


@dataclass(frozen=True)
class Task:
    name: str
    capability: str
    kind: str  # "multiple_choice", "generate" or "perplexity"
    version: str
    reference: str  # the lm-eval task this follows
    render: Callable | None = None  # record -> MultipleChoice | Generation
    metrics: tuple[str, ...] = ("acc",)
    primary: str = "acc"
    max_new_tokens: int = 256
    source: str | None = None  # perplexity: a colakit.data.sources name
    data_task: str | None = None  # name in colakit.data.evalsets when it differs
    extra: dict = field(default_factory=dict)


def _mc(context: str, choices: list[str], gold: int, delimiter: str = " ") -> MultipleChoice:
    return MultipleChoice([context] * len(choices), [delimiter + c for c in choices], list(choices), int(gold))


# --------------------------------------------------------------------------- commonsense


def _hellaswag_clean(text: str) -> str:
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)  # WikiHow artifacts
    return text.replace("  ", " ")


def render_hellaswag(d: dict) -> MultipleChoice:
    ctx = d["ctx_a"] + " " + d["ctx_b"].capitalize()
    return _mc(_hellaswag_clean(d["activity_label"] + ": " + ctx), [_hellaswag_clean(e) for e in d["endings"]],
               int(d["label"]))


def render_piqa(d: dict) -> MultipleChoice:
    return _mc(f"Question: {d['goal']}\nAnswer:", [d["sol1"], d["sol2"]], d["label"])


def render_arc(d: dict) -> MultipleChoice:
    if "query" in d:  # oe-eval records carry lm-eval's "Question: ...\nAnswer:" already
        return _mc(d["query"], list(d["choices"]), d["gold"])
    labels = list(d["choices"]["label"])
    return _mc(f"Question: {d['question']}\nAnswer:", list(d["choices"]["text"]), labels.index(d["answerKey"]))


def render_boolq(d: dict) -> MultipleChoice:
    return _mc(f"{d['passage']}\nQuestion: {d['question']}?\nAnswer:", ["no", "yes"], int(bool(d["answer"])))


def render_winogrande(d: dict) -> MultipleChoice:
    blank = d["sentence"].index("_")
    contexts = [d["sentence"][:blank] + opt for opt in (d["option1"], d["option2"])]
    target = d["sentence"][blank + 1:].strip()
    return MultipleChoice(contexts, [" " + target] * 2, contexts, {"1": 0, "2": 1}[str(d["answer"])])


def render_openbookqa(d: dict) -> MultipleChoice:
    labels = list(d["choices"]["label"])
    return _mc(d["question_stem"], list(d["choices"]["text"]), labels.index(d["answerKey"].lstrip()))


def render_csqa(d: dict) -> MultipleChoice:
    texts = d["choices"]["text"]
    letters = ["A", "B", "C", "D", "E"]
    body = "\n".join(f"{letter}. {text}" for letter, text in zip(letters, texts))
    return _mc(f"Question: {d['question'].strip()}\n{body}\nAnswer:", letters, letters.index(d["answerKey"].strip()))


def render_siqa(d: dict) -> MultipleChoice:
    return _mc(f"Q: {d['context']} {d['question']}\nA:", [d["answerA"], d["answerB"], d["answerC"]],
               int(d["label"]) - 1)


def render_sciq(d: dict) -> MultipleChoice:
    return _mc(f"{d['support'].lstrip()}\nQuestion: {d['question']}\nAnswer:",
               [d["distractor1"], d["distractor2"], d["distractor3"], d["correct_answer"]], 3)


def render_copa(d: dict) -> MultipleChoice:
    connector = {"cause": "because", "effect": "therefore"}[d["question"]]
    # lm-eval keeps its leading space on each choice *and* adds the target delimiter; so do we.
    choices = [" " + c[0].lower() + c[1:] for c in (d["choice1"], d["choice2"])]
    return _mc(d["premise"].strip()[:-1] + f" {connector}", choices, d["label"])


def render_mmlu(d: dict) -> MultipleChoice:
    subject = d["subject"].replace("_", " ")
    body = "\n".join(f"{letter}. {c}" for letter, c in zip("ABCD", d["choices"]))
    header = f"The following are multiple choice questions (with answers) about {subject}.\n\n"
    return _mc(f"{header}{d['question'].strip()}\n{body}\nAnswer:", ["A", "B", "C", "D"], int(d["answer"]))


# --------------------------------------------------------------------------- math

# The 8 chain-of-thought exemplars of Wei et al. (2022), as lm-eval's gsm8k_cot lists them.
GSM8K_EXEMPLARS: tuple[tuple[str, str], ...] = (
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
GSM8K_STOP = ("Q:", "</s>", "<|im_end|>")


def gsm8k_gold_chain(answer: str) -> str:
    """The reference solution in the exemplars' style: calculator notes dropped, 'The answer is N.'"""
    chain, final = answer.split("####")
    chain = re.sub(r"<<.*?>>", "", chain)
    return " ".join(line.strip() for line in chain.strip().splitlines() if line.strip()) + \
        f" The answer is {final.strip()}."


def gsm8k_messages(question: str) -> list[dict]:
    """The same 8-shot prompt as chat turns (lm-eval's --apply_chat_template --fewshot_as_multiturn)."""
    msgs = []
    for q, a in GSM8K_EXEMPLARS:
        msgs += [{"role": "user", "content": f"Q: {q}\nA:"}, {"role": "assistant", "content": a}]
    return msgs + [{"role": "user", "content": f"Q: {question}\nA:"}]


def render_gsm8k(d: dict) -> Generation:
    shots = "".join(f"Q: {q}\nA: {a}\n\n" for q, a in GSM8K_EXEMPLARS)
    return Generation(f"{shots}Q: {d['question']}\nA:", GSM8K_STOP, " " + gsm8k_gold_chain(d["answer"]))


_STRICT = re.compile(r"The answer is (\-?[0-9\.\,]+).")
_FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
_IGNORE = (r",", r"\$", r"(?s).*#### ", r"\.$")


def _em_normalise(text: str) -> str:
    for pattern in _IGNORE:
        text = re.sub(pattern, "", text)
    return text.strip().lower()


def gsm8k_extract(completion: str) -> dict[str, str | None]:
    strict = _STRICT.search(completion)
    flexible = _FLEXIBLE.findall(completion)
    last = next((g for g in flexible[-1] if g), None) if flexible else None
    return {"strict": strict.group(1) if strict else None, "flexible": last}


def gsm8k_gold(d: dict) -> str:
    return d["answer"].split("####")[-1].strip()


def gsm8k_correct(d: dict, extracted: dict[str, str | None]) -> dict[str, bool]:
    gold = _em_normalise(gsm8k_gold(d))
    return {k: v is not None and _em_normalise(v) == gold for k, v in extracted.items()}


def render_math(d: dict) -> Generation:
    return Generation(f"Problem:\n{d['problem']}\n\nSolution:", ("Problem:", "</s>", "<|im_end|>"),
                      " " + d["solution"])


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (balanced braces), or None."""
    start = text.rfind("\\boxed")
    if start < 0:
        return None
    i = text.find("{", start)
    if i < 0:
        return None
    depth = 0
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1 : j]
    return None


def math_normalise(answer: str) -> str:
    """A short Minerva-style normalisation (Lewkowycz et al. 2022, appendix D): units, TeX noise, spaces."""
    answer = answer.split("=")[-1]
    for old, new in (("\\left", ""), ("\\right", ""), ("\\!", ""), ("\\,", ""), ("\\ ", ""), ("dfrac", "frac"),
                     ("tfrac", "frac"), ("^\\circ", ""), ("^{\\circ}", ""), ("\\%", ""), ("%", ""), ("$", ""),
                     (" ", "")):
        answer = answer.replace(old, new)
    answer = re.sub(r"\\text\{(.*?)\}", r"\1", answer)
    answer = re.sub(r"\\mbox\{(.*?)\}", r"\1", answer)
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+", answer):
        answer = answer.replace(",", "")
    return answer.rstrip(".")


def math_extract(completion: str) -> str | None:
    found = re.search(r"final answer is\s*\$?(.*?)\$?\.?\s*(I hope|$)", completion)
    return found.group(1) if found else last_boxed(completion)


# --------------------------------------------------------------------------- code

HUMANEVAL_STOP = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
MBPP_STOP = ("[DONE]",)

# MBPP's prompt-split problems 2, 3 and 4, the 3 exemplars lm-eval's mbpp task uses.
MBPP_EXEMPLARS: tuple[dict, ...] = (
    {"text": "Write a function to find the similar elements from the given two tuple lists.",
     "code": "def similar_elements(test_tup1, test_tup2):\r\n  res = tuple(set(test_tup1) & set(test_tup2))\r\n"
             "  return (res) ",
     "test_list": ["assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)",
                   "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)",
                   "assert similar_elements((11, 12, 14, 13),(17, 15, 14, 13)) == (13, 14)"]},
    {"text": "Write a python function to identify non-prime numbers.",
     "code": "import math\r\ndef is_not_prime(n):\r\n    result = False\r\n    for i in range(2,int(math.sqrt(n)) + 1):"
             "\r\n        if n % i == 0:\r\n            result = True\r\n    return result",
     "test_list": ["assert is_not_prime(2) == False", "assert is_not_prime(10) == True",
                   "assert is_not_prime(35) == True"]},
    {"text": "Write a function to find the largest integers from a given list of numbers using heap queue algorithm.",
     "code": "import heapq as hq\r\ndef heap_queue_largest(nums,n):\r\n  largest_nums = hq.nlargest(n, nums)\r\n"
             "  return largest_nums",
     "test_list": ["assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],3)==[85, 75, 65] ",
                   "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],2)==[85, 75] ",
                   "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],5)==[85, 75, 65, 58, 35]"]},
)


def _mbpp_query(d: dict) -> str:
    tests = "\n".join(d["test_list"][:3])
    return (f"You are an expert Python programmer, and here is your task: {d['text']} "
            f"Your code should pass these tests:\n\n{tests}\n[BEGIN]\n")


def render_mbpp(d: dict) -> Generation:
    shots = "".join(_mbpp_query(x) + x["code"] + "\n[DONE]\n\n" for x in MBPP_EXEMPLARS)
    return Generation(shots + _mbpp_query(d), MBPP_STOP, d["code"] + "\n[DONE]")


def mbpp_program(d: dict, code: str) -> str:
    return "\n".join([code, d.get("test_setup_code") or "", *d["test_list"]]) + "\n"


def render_humaneval(d: dict) -> Generation:
    return Generation(d["prompt"], HUMANEVAL_STOP, d["canonical_solution"])


def humaneval_program(d: dict, completion: str) -> str:
    return f"{d['prompt']}{completion}\n{d['test']}\ncheck({d['entry_point']})\n"


def code_program(task: str, d: dict, completion: str) -> str:
    return humaneval_program(d, completion) if task == "humaneval" else mbpp_program(d, completion)


def canonical_completion(task: str, d: dict) -> str:
    return d["canonical_solution"] if task == "humaneval" else d["code"]


# --------------------------------------------------------------------------- the registry

_CS_NORM = ("acc", "acc_norm", "acc_bytes")


def _task_list() -> list[Task]:
    mc = "multiple_choice"
    return [
        Task("ppl_wiki", "LM", "perplexity", "1", "wikitext (loglikelihood_rolling)", source="wiki",
             metrics=("word_perplexity", "token_perplexity", "bits_per_byte"), primary="token_perplexity"),
        Task("ppl_c4", "LM", "perplexity", "1", "loglikelihood_rolling", source="c4",
             metrics=("word_perplexity", "token_perplexity", "bits_per_byte"), primary="token_perplexity"),
        Task("ppl_code", "LM", "perplexity", "1", "loglikelihood_rolling", source="code",
             metrics=("word_perplexity", "token_perplexity", "bits_per_byte"), primary="token_perplexity"),
        # Math solutions as the ``math`` source renders them ("Problem: ...\n\nSolution: ..."): its
        # held-out part, which is exactly the ``math`` eval task's problems, so calibrating on the
        # source's calibration part never sees them.
        Task("ppl_math", "LM", "perplexity", "1", "loglikelihood_rolling", source="math",
             metrics=("word_perplexity", "token_perplexity", "bits_per_byte"), primary="token_perplexity"),
        # No multilingual MMLU ships offline: multilingual capability is perplexity on the held-out
        # part of the multilingual pool (many scripts).
        Task("ppl_multilingual", "Multilingual", "perplexity", "1", "loglikelihood_rolling", source="multilingual",
             metrics=("word_perplexity", "token_perplexity", "bits_per_byte"), primary="bits_per_byte"),
        Task("hellaswag", "Commonsense", mc, "1", "hellaswag v1.0", render_hellaswag, _CS_NORM, "acc_norm"),
        Task("piqa", "Commonsense", mc, "1", "piqa v1.0", render_piqa, _CS_NORM, "acc_norm"),
        Task("arc_easy", "Commonsense", mc, "1", "arc_easy v1.0 (test split)", render_arc, _CS_NORM, "acc_norm"),
        Task("arc_challenge", "Commonsense", mc, "1", "arc_challenge v1.0 (test split)", render_arc, _CS_NORM,
             "acc_norm"),
        Task("boolq", "Commonsense", mc, "1", "boolq v2.0", render_boolq),
        Task("winogrande", "Commonsense", mc, "1", "winogrande v1.0 (partial scoring)", render_winogrande),
        Task("openbookqa", "Commonsense", mc, "1", "openbookqa v1.0", render_openbookqa, _CS_NORM, "acc_norm"),
        Task("csqa", "Commonsense", mc, "1", "commonsense_qa", render_csqa),
        Task("siqa", "Commonsense", mc, "1", "social_iqa v0.0", render_siqa),
        Task("sciq", "Commonsense", mc, "1", "sciq v1.0", render_sciq, _CS_NORM, "acc_norm"),
        Task("copa", "Commonsense", mc, "1", "copa v1.0", render_copa),
        Task("mmlu", "Knowledge", mc, "1", "mmlu v2 (0-shot, default template)", render_mmlu,
             ("acc", "acc_macro"), "acc_macro"),
        Task("gsm8k", "Math", "generate", "1", "gsm8k_cot v3.0 (8-shot)", render_gsm8k,
             ("exact_match_strict", "exact_match_flexible"), "exact_match_strict", max_new_tokens=256),
        Task("math", "Math", "generate", "1", "MATH 0-shot, Minerva answer normalisation", render_math,
             ("exact_match",), "exact_match", max_new_tokens=512),
        Task("humaneval", "Code", "generate", "1", "humaneval v1.0 (pass@1, greedy)", render_humaneval,
             ("pass@1",), "pass@1", max_new_tokens=512),
        Task("mbpp", "Code", "generate", "1", "mbpp v1.0 (3-shot, pass@1, greedy)", render_mbpp,
             ("pass@1",), "pass@1", max_new_tokens=512),
    ]


REGISTRY: dict[str, Task] = {t.name: t for t in _task_list()}

LOWER_IS_BETTER = {"word_perplexity", "token_perplexity", "bits_per_byte"}

SUITES: dict[str, dict[str, int | None]] = {
    # every capability, seeded subsets sized by a power calculation (colakit.evaluate.power; print it
    # with `colakit evaluate --power`): every task detects the same retention difference between two
    # compressed models at 80% power, within 10 minutes for the default model on 2 CPU cores
    "quick": quick_sizes(),
    # the paper's tasks (perplexity, commonsense, math, code, multilingual), full sets
    "standard": {t: None for t in ("ppl_wiki", "ppl_c4", "ppl_multilingual", "hellaswag", "winogrande", "boolq",
                                   "openbookqa", "piqa", "arc_easy", "arc_challenge", "mmlu", "gsm8k", "humaneval",
                                   "mbpp")},
    "full": {t: None for t in REGISTRY},
}


def get_task(name: str) -> Task:
    if name not in REGISTRY:
        raise ColakitError(f"unknown task {name!r}",
                           f"valid tasks: {', '.join(REGISTRY)}; suites: {', '.join(SUITES)}")
    return REGISTRY[name]


def _item_cap(raw: str, cap: str) -> int:
    if not cap.isdigit() or int(cap) <= 0:
        raise ColakitError(f"cannot read {raw.strip()!r}", "write TASK:N with N a positive number of items")
    return int(cap)


def resolve_tasks(spec: str | list[str], limit: int | None = None) -> dict[str, int | None]:
    """A suite name, task names (``task:N`` caps that task at N items), or a comma list of both -> {task: limit}.

    An explicit ``limit`` overrides the suite's limits (it caps them; never raises them).
    """
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    out: dict[str, int | None] = {}
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        if name in SUITES:
            for task, n in SUITES[name].items():
                out.setdefault(task, n)
        else:
            name, _, cap = name.partition(":")
            out.setdefault(get_task(name).name, _item_cap(raw, cap) if cap else None)
    if not out:
        raise ColakitError("no tasks given", f"name a suite ({', '.join(SUITES)}) or tasks ({', '.join(REGISTRY)})")
    if limit is not None:
        if limit <= 0:
            raise ColakitError(f"--limit must be a positive number of items, got {limit}",
                               "leave --limit out to evaluate every item")
        out = {t: limit if n is None else min(n, limit) for t, n in out.items()}
    return out
