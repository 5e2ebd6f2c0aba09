"""The competing curation methods: mix-uniform, igsp, zipcal, self-gen, self-cal."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from colakit.errors import ColakitError
from colakit.model.load import ensure_pad_token
from colakit.curate.process import Candidate
from colakit.curate.select import get_selector
from colakit.curate.select.mix import IgspSelector, four_grams
from colakit.curate.select.selfgen import LinearTemperature, generate, perplexities
from tiny_models import tiny_model, tiny_tokenizer

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau "
         "upsilon phi chi psi omega fox dog cat owl bee ant elk yak").split()


@pytest.fixture(scope="module")
def tok():
    t = tiny_tokenizer()
    ensure_pad_token(t)
    return t


@pytest.fixture(scope="module")
def llama():
    return tiny_model("llama")


def cand(ids, source="a", doc_id="d", text=None):
    return Candidate(list(ids), text if text is not None else " ".join(map(str, ids)), source, doc_id, [doc_id])


def pool_of(sizes: dict, length=24, seed=0, vocab=256):
    rng = np.random.default_rng(seed)
    return [cand(rng.integers(3, vocab, size=length).tolist(), src, f"{src}{k}")
            for src, n in sizes.items() for k in range(n)]


def bound(name, model, tok, seq_len=24, **params):
    sel = get_selector(name, **params)
    sel.bind(model, tok, SimpleNamespace(seq_len=seq_len))
    return sel


# ---------------------------------------------------------------- mix-uniform


def test_mix_uniform_equal_shares_remainder_in_source_order():
    pool = pool_of({"a": 10, "b": 10, "c": 10})
    sel = get_selector("mix-uniform").select(pool, None, 8, seed=0)
    counts = {s: sum(pool[i].source == s for i in sel.indices) for s in "abc"}
    assert counts == {"a": 3, "b": 3, "c": 2} == sel.info["shares"]
    assert len(set(sel.indices)) == 8
    again = get_selector("mix-uniform").select(pool, None, 8, seed=0)
    other = get_selector("mix-uniform").select(pool, None, 8, seed=1)
    assert again.indices == sel.indices != other.indices


def test_mix_uniform_short_source_is_an_error():
    pool = pool_of({"a": 10, "b": 2})
    with pytest.raises(ColakitError, match="source 'b' has 2 candidate windows but its equal share is 3"):
        get_selector("mix-uniform").select(pool, None, 6, seed=0)
    with pytest.raises(ColakitError, match="larger than the pool"):
        get_selector("mix-uniform").select(pool, None, 13, seed=0)


# ---------------------------------------------------------------- perplexity helper


def test_perplexities_match_the_model_loss_and_ignore_padding(llama):
    rng = np.random.default_rng(0)
    long, short = rng.integers(3, 256, 20).tolist(), rng.integers(3, 256, 9).tolist()
    with torch.no_grad():
        ref = math.exp(llama(input_ids=torch.tensor([short]), labels=torch.tensor([short])).loss.item())
    together = perplexities(llama, [long, short], pad_id=0, batch_size=2)
    alone = perplexities(llama, [short], pad_id=0, batch_size=1)
    assert together[1] == pytest.approx(ref, rel=1e-4) and alone[0] == pytest.approx(ref, rel=1e-4)
    with pytest.raises(ColakitError, match="at least 2 tokens"):
        perplexities(llama, [[5]])


# ---------------------------------------------------------------- igsp


def test_igsp_balances_sources_and_stays_in_the_perplexity_band(llama, tok):
    pool = pool_of({"a": 12, "b": 12})
    sel = bound("igsp", llama, tok).select(pool, None, 6, seed=0)
    assert sorted(pool[i].source for i in sel.indices) == ["a"] * 3 + ["b"] * 3
    log_ppl = np.log(perplexities(llama, [c.input_ids for c in pool]))
    target = np.median(log_ppl)
    for src in "ab":  # every pick is among the half of its source nearest the pool's median
        idx = [i for i, c in enumerate(pool) if c.source == src]
        band = sorted(idx, key=lambda i: abs(log_ppl[i] - target))[:6]
        assert {i for i in sel.indices if pool[i].source == src} <= set(band)
    assert sel.info["target_ppl"] == pytest.approx(math.exp(target), rel=1e-4)
    assert bound("igsp", llama, tok).select(pool, None, 6, seed=0).indices == sel.indices


def test_igsp_avoids_repeated_4grams():
    base = list(range(10, 40))
    shifted = [base[k:k + 24] for k in range(4)]  # four windows that share most of their 4-grams
    fresh = [list(range(100 + 30 * k, 124 + 30 * k)) for k in range(3)]
    pool = [cand(ids) for ids in shifted + fresh]
    flat = {i: 0.0 for i in range(len(pool))}  # equal perplexity: only the 4-grams decide
    picked = IgspSelector._greedy_4grams(pool, {"a": list(range(len(pool)))}, {"a": 4}, flat, 0.0,
                                         {i: i for i in range(len(pool))})
    assert sum(i < 4 for i in picked) == 1 and set(range(4, 7)) <= set(picked)
    assert len(four_grams(shifted[0]) & four_grams(shifted[1])) == 20


def test_igsp_needs_a_model_and_valid_band():
    with pytest.raises(ColakitError, match="needs a model"):
        get_selector("igsp").select(pool_of({"a": 4}), None, 2, seed=0)
    with pytest.raises(ColakitError, match="band"):
        get_selector("igsp", band=0)


# ---------------------------------------------------------------- zipcal


def test_zipcal_prefers_new_and_rare_words():
    texts = ["fox dog fox dog fox dog", "fox dog cat", "fox dog fox", "owl bee ant elk", "yak fox"]
    pool = [cand([1, 2, 3], doc_id=str(k), text=t) for k, t in enumerate(texts)]
    sel = get_selector("zipcal").select(pool, None, 2, seed=0)
    # first the four words no other window has, then the window with the most rare-word weight left
    assert sel.indices == [3, 1] and sel.info["types_covered"] == 7
    assert sel.scores[0] > sel.scores[1] > 0


def test_zipcal_covers_more_types_than_random_and_is_seeded():
    rng = np.random.default_rng(1)
    # Zipf-like pool: frequent words everywhere, each rare word in few windows
    ranks = np.arange(1, len(WORDS) + 1)
    p = (1 / ranks) / (1 / ranks).sum()
    pool = [cand([1], doc_id=str(k), text=" ".join(rng.choice(WORDS, size=12, p=p))) for k in range(60)]
    z = get_selector("zipcal", weighting="uniform").select(pool, None, 8, seed=0)
    covered = lambda idx: len({w for i in idx for w in pool[i].text.split()})  # noqa: E731
    rand = [covered(get_selector("random").select(pool, None, 8, seed=s).indices) for s in range(20)]
    assert covered(z.indices) == z.info["types_covered"] > max(rand)
    assert get_selector("zipcal", weighting="uniform").select(pool, None, 8, seed=0).indices == z.indices


def test_zipcal_tokens_and_bad_options():
    pool = [cand(ids, doc_id=str(k)) for k, ids in enumerate([[1, 2], [1, 2], [3, 4, 5], [6]])]
    sel = get_selector("zipcal", unit="tokens").select(pool, None, 3, seed=0)
    assert sel.indices[:2] == [2, 0] or sel.indices[:2] == [2, 1]
    assert sel.info["types_covered"] == 6
    with pytest.raises(ColakitError, match="unknown zipcal unit"):
        get_selector("zipcal", unit="chars")
    with pytest.raises(ColakitError, match="unknown zipcal weighting"):
        get_selector("zipcal", weighting="tfidf")


# ---------------------------------------------------------------- generation


def test_linear_temperature_schedule():
    sched = LinearTemperature(prompt_len=1, t_start=2.0, t_end=0.5, steps=4)
    assert [sched.temperature(i) for i in range(6)] == [2.0, 1.5, 1.0, 0.5, 0.5, 0.5]
    scores = torch.ones(1, 3)
    assert torch.allclose(sched(torch.zeros(1, 2, dtype=torch.long), scores), scores / 1.5)


def test_near_zero_temperature_schedule_is_greedy(llama):
    prompt = [[1, 7, 9]]
    greedy = llama.generate(input_ids=torch.tensor(prompt), do_sample=False, max_new_tokens=8, min_new_tokens=8,
                            pad_token_id=0, eos_token_id=2)
    cold = generate(llama, prompt, 11, seed=3, schedule=(1e-4, 1e-4, None), eos_id=2)
    assert cold[0] == greedy[0].tolist()


@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen3"])
def test_self_gen_continues_real_prefixes(family, tok):
    model = tiny_model(family)
    pool = pool_of({"c4": 20, "wiki": 20}, length=24)
    state = torch.random.get_rng_state()
    sel = bound("self-gen", model, tok, seq_len=20, prefix_tokens=4).select(pool, None, 4, seed=0)
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's RNG is untouched
    assert sel.info["generated"] == math.ceil(4 * 1.5 / 0.8) == 8 and sel.info["kept"] == 7
    assert len(sel.generated) == 4 and sel.indices == [0, 1, 2, 3]
    by_doc = {c.doc_id: c for c in pool}
    for g, ppl in zip(sel.generated, sel.scores):
        assert len(g.input_ids) == 20 and g.source == "self-gen"
        assert g.input_ids[:4] == by_doc[g.doc_id].input_ids[:4]
        assert ppl <= sel.info["ppl_cutoff"] < sel.info["ppl_dropped_min"]
    again = bound("self-gen", model, tok, seq_len=20, prefix_tokens=4).select(pool, None, 4, seed=0)
    other = bound("self-gen", model, tok, seq_len=20, prefix_tokens=4).select(pool, None, 4, seed=1)
    assert [g.input_ids for g in again.generated] == [g.input_ids for g in sel.generated]
    assert [g.input_ids for g in other.generated] != [g.input_ids for g in sel.generated]


def test_self_gen_errors(llama, tok):
    pool = pool_of({"a": 5})
    with pytest.raises(ColakitError, match="needs 8 prefixes"):
        bound("self-gen", llama, tok).select(pool, None, 4, seed=0)
    with pytest.raises(ColakitError, match="no room to generate"):
        bound("self-gen", llama, tok, seq_len=8, prefix_tokens=8).select(pool_of({"a": 20}), None, 2, seed=0)
    with pytest.raises(ColakitError, match="drop_fraction"):
        get_selector("self-gen", drop_fraction=1.0)


def test_self_cal_generates_from_bos_alone(llama, tok):
    sel = bound("self-cal", llama, tok, seq_len=16).select([], None, 3, seed=0)
    assert len(sel.generated) == 3 and sel.indices == [0, 1, 2]
    for k, g in enumerate(sel.generated):
        assert len(g.input_ids) == 16 and g.input_ids[0] == tok.bos_token_id and g.source == "self-cal"
        assert g.doc_id == f"self-cal:0:{k}"
    again = bound("self-cal", llama, tok, seq_len=16).select([], None, 3, seed=0)
    assert [g.input_ids for g in again.generated] == [g.input_ids for g in sel.generated]
    assert len({tuple(g.input_ids) for g in sel.generated}) == 3
    assert get_selector("self-cal").needs_pool is False
    with pytest.raises(ColakitError, match="t_start"):
        get_selector("self-cal", t_start=0)


@pytest.mark.integration
def test_self_gen_through_curate_on_the_default_model(tmp_path):
    from colakit.calibset import CalibrationSet
    from colakit.curate.pipeline import CurateConfig, curate

    cfg = CurateConfig(sources=["c4"], method="self-gen", n=2, seq_len=32, pool_per_source=16, seed=0)
    calib = curate(cfg, out=tmp_path / "sg")
    back = CalibrationSet.load(tmp_path / "sg")
    assert back.content_hash == calib.content_hash and len(back) == 2
    assert all(s.source == "self-gen" and len(s.input_ids) == 32 and s.doc_id for s in back.samples)
    assert back.manifest["method"] == "self-gen" and back.manifest["selection_info"]["generated"] == 4
