"""Scoring engines on tiny random models: log-likelihood, generation, perplexity, the evaluate loop."""

from __future__ import annotations

import json
import math

import pytest
import torch

from colakit.errors import ColakitError
from colakit.evaluate import compare, evaluate, select_items
from colakit.evaluate.generate import cut_at_stop, generate
from colakit.evaluate.loglik import Request, score_requests
from colakit.evaluate.perplexity import perplexity, rolling_windows
from test_evaluate_support import byte_tokenizer, naive_logprob, tiny

REQUESTS = [Request("Question: what is two?\nAnswer:", " a number"), Request("Question: what is two?\nAnswer:", " a colour"),
            Request("Short", " one"), Request("X", " y"), Request("", "unconditional"), Request("Ctx here ", "c d")]


def test_shared_prefix_batches_match_naive_scoring(family):
    model, tok = tiny(family), byte_tokenizer()
    got = score_requests(model, tok, REQUESTS, token_budget=48)  # small budget: several batches
    for score, req in zip(got, REQUESTS):
        assert score.logprob == pytest.approx(naive_logprob(model, tok, req.context, req.continuation), abs=1e-3)
        assert score.n_tokens > 0


def test_loglik_truncates_long_context_from_the_left():
    from colakit.evaluate.loglik import encode_pair

    model, tok = tiny("llama"), byte_tokenizer()
    ctx, cont = encode_pair(tok, "word " * 100, " end")
    (score,) = score_requests(model, tok, [Request("word " * 100, " end")], max_length=32)
    ids = torch.tensor([ctx[-(32 - len(cont)):] + cont])  # lm-eval keeps the last max_length tokens
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=ids).logits[0, -len(cont) - 1 : -1], -1)
    assert score.logprob == pytest.approx(float(lp.gather(1, torch.tensor(cont).unsqueeze(1)).sum()), abs=1e-3)
    with pytest.raises(ColakitError, match="continuation"):
        score_requests(model, tok, [Request("a", "x" * 40)], max_length=32)


def test_generation_stops_and_is_bounded():
    model, tok = tiny("llama"), byte_tokenizer()
    prompts = ["Hello there", "A longer prompt for the model", "x"]
    free = generate(model, tok, prompts, max_new_tokens=12, batch_size=3)
    assert all(o.finish in ("length", "eos") and o.n_tokens <= 12 for o in free)
    stop_at = free[0].text[3:5]  # a stop sequence this model will produce
    stopped = generate(model, tok, prompts[:1], stop=[stop_at], max_new_tokens=12, batch_size=1)[0]
    assert stopped.finish == "stop" and stop_at not in stopped.text and free[0].text.startswith(stopped.text)
    one_by_one = [generate(model, tok, [p], max_new_tokens=12, batch_size=1)[0].text for p in prompts]
    assert [o.text for o in free] == one_by_one  # left padding does not change greedy outputs
    with pytest.raises(ColakitError):
        generate(model, tok, prompts, max_new_tokens=0)


def test_cut_at_stop():
    assert cut_at_stop("abc Q: next", ("Q:", "\n")) == ("abc ", True)
    assert cut_at_stop("abc", ("Q:",)) == ("abc", False)


def test_rolling_windows_predict_every_token_once():
    tokens = list(range(10, 27))
    windows = rolling_windows(tokens, 0, 5)
    predicted = [t for seq, n in windows for t in seq[-n:]]
    assert predicted == tokens
    assert all(len(seq) - 1 <= 5 for seq, _ in windows)


def test_perplexity_with_one_window_equals_full_sequence_nll():
    model, tok = tiny("qwen2"), byte_tokenizer()
    texts = ["hello world, a document.", "another one"]
    out = perplexity(model, tok, texts, seq_len=200)
    total = n = 0
    for t in texts:
        ids = [tok.eos_token_id] + tok.encode(t)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0]
        total += float(torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(ids[1:]), reduction="sum"))
        n += len(ids) - 1
    m = out["metrics"]
    assert m["token_perplexity"] == pytest.approx(math.exp(total / n), rel=1e-4)
    assert m["bits_per_byte"] == pytest.approx(total / math.log(2) / sum(len(t.encode()) for t in texts), rel=1e-4)
    assert m["tokens"] == n and len(out["documents"]) == 2


COPA = [{"id": str(i), "premise": p, "question": q, "choice1": a, "choice2": b, "label": y} for i, (p, q, a, b, y) in
        enumerate([("The man turned on the faucet.", "effect", "The toilet filled.", "Water flowed.", 1),
                   ("The girl ran.", "cause", "She was late.", "She was asleep.", 0),
                   ("It rained.", "effect", "The grass got wet.", "The sun shone.", 0),
                   ("He ate.", "cause", "He was hungry.", "He was full.", 0),
                   ("She laughed.", "cause", "The joke was funny.", "The joke was sad.", 0)])]
WINO = [{"id": "w0", "sentence": "Sarah beat Maria because _ trained more.", "option1": "Sarah", "option2": "Maria",
         "answer": "1"}]


def test_evaluate_records_items_stderr_and_is_deterministic(tmp_path):
    model, tok = tiny("llama"), byte_tokenizer()
    kw = dict(limit=3, seed=7, items_override={"copa": COPA, "winogrande": WINO})
    a = evaluate(model, tok, "copa,winogrande", out=tmp_path / "r.json", **kw)
    b = evaluate(model, tok, ["copa", "winogrande"], **kw)
    copa = a["tasks"]["copa"]
    assert copa["n"] == 3 and copa["item_ids"] == [r["id"] for r in copa["items"]]
    assert copa["item_ids"] == [d["id"] for d in select_items(COPA, 3, 7, "copa")]
    assert {"acc", "acc_stderr", "acc_norm"} <= set(copa["metrics"])
    assert all(math.isfinite(r["gold_logprob"]) and r["gold_bpb"] > 0 for r in copa["items"])
    def numbers(r):  # everything but timings; NaN (one-item stderr) compares equal as text
        return json.dumps({n: {k: v for k, v in t.items() if k != "wall_time_s"} for n, t in r["tasks"].items()})

    assert numbers(a) == numbers(b) and a["model"]["hash"] == b["model"]["hash"]
    assert json.loads((tmp_path / "r.json").read_text())["tasks"]["copa"]["item_ids"] == copa["item_ids"]
    assert a["capabilities"]["Commonsense"]["tasks"] == ["copa", "winogrande"]
    flags = {n: t["flags"] for n, t in a["tasks"].items()}
    assert all(set(f) >= {"chance", "reason"} for f in flags.values())
    # one WinoGrande item: accuracy is within a standard error of chance, so it is flagged and left out
    assert flags["winogrande"]["chance"] and "winogrande" in a["capabilities"]["Commonsense"]["flagged"]


def test_evaluate_resumes_from_task_checkpoints(tmp_path, monkeypatch):
    import colakit.evaluate.runner as runner

    model, tok = tiny("llama"), byte_tokenizer()
    first = evaluate(model, tok, "copa", items_override={"copa": COPA}, out=tmp_path / "r.json")

    def boom(*a, **k):
        raise AssertionError("recomputed a finished task")

    monkeypatch.setitem(runner._ENGINES, "multiple_choice", boom)
    again = evaluate(model, tok, "copa", items_override={"copa": COPA}, out=tmp_path / "r.json")
    assert again["tasks"] == first["tasks"]
    with pytest.raises(AssertionError):  # another seed subset is new work
        evaluate(model, tok, "copa", items_override={"copa": COPA}, out=tmp_path / "r.json", limit=2, seed=1)


def test_compare_retention_directions():
    def result(acc, ppl):
        items = [{"id": "0", "acc": True}, {"id": "1", "acc": acc > 0.5}]
        return {"model": {}, "tasks": {
            "copa": {"capability": "Commonsense", "primary": "acc", "higher_is_better": True, "item_ids": ["0", "1"],
                     "metrics": {"acc": acc, "acc_stderr": 0.1}, "items": items},
            "ppl_wiki": {"capability": "LM", "primary": "token_perplexity", "higher_is_better": False,
                         "item_ids": ["d"], "metrics": {"token_perplexity": ppl}, "items": []}}}

    r = compare(result(0.5, 20.0), result(1.0, 10.0))
    assert r["tasks"]["copa"]["retention"] == pytest.approx(0.5)
    assert r["tasks"]["ppl_wiki"]["retention"] == pytest.approx(0.5)  # dense/compressed: higher is better
    assert r["capabilities"]["Commonsense"]["retention"] == pytest.approx(0.5)
    assert r["tasks"]["copa"]["mcnemar"]["only_a"] == 1
