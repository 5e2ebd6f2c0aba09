"""``balanced-trial``: budget shares set by a trial compression of a few blocks (colakit's own method).

``balanced`` and ``balanced-hessian`` judge a capability's coverage in the activation features,
and on the default model at seed 0 both left code with 1-2 windows of 32; after SparseGPT, code
perplexity retention followed the number of code windows (COLA 5: 0.582, ``balanced`` 2: 0.524,
``balanced-hessian`` 1: 0.508; docs/results/pareto.md). The features never said code needed more.
This method asks the compressor instead, on the quantity the study scores, the fraction of the
best single source, measured at the layer level:

1. Inputs. For ``trial_blocks`` blocks spread over the depth, one forward of up to ``budget``
   pool windows per source (in a seeded order) keeps each window's inputs to the block's distinct
   linear inputs (attention in, attention out, MLP in, MLP out); one forward of
   ``probes_per_capability`` probe windows per capability, from documents that no candidate comes
   from, gives each capability's second moments ``H_c = X^T X / n`` there.
2. Trial. A set of ``n_k`` windows per source is the first ``n_k`` of each source's order; its
   moments ``H(n)`` are summed from those windows' own inputs, so a trial has the noise of the budget
   it judges (a mean over the whole pool would make every mixture look better than any single
   source). Every linear of the blocks is compressed on ``H(n)`` by each method the set is for (the
   curation's ``compression``, else GPTQ and SparseGPT at their defaults), and capability c's error
   is the mean over the linears of ``||(W - W') x||^2 / ||W x||^2`` under ``H_c``
   (``||dW x||^2`` from ``H_c``, as ``hessian.error_terms``). Trials need no forward pass.
3. Reference. The same trial with every source alone; ``e*_c`` is the best single source's error on
   c, that source is c's champion, and ``rho_c(n) = e*_c / e_c(n)``.
4. Shares. From an even split, a local search on the largest weighted deficit
   ``w_c (1 - rho_c)`` (worst over methods, as ``balanced``'s max-min): each step moves ``unit``
   windows to the champion of the neediest capability from the first source, in order of slack
   (the largest deficit among the capabilities it is champion of, smallest first), whose move
   lowers the largest deficit; when none does, the unit halves, and the search stops at one
   window (or after ``steps`` moves).
5. Stage 3 is COLA's: k-means medoids inside each source, k = its share.

What it ignores: errors that compound through the compressed blocks before a layer (each layer is
compressed on the dense model's inputs), and which windows inside a source stage 3 picks (a trial
takes a random subset). Memory: the kept inputs, ``sources x budget x seq_len x (3 hidden +
intermediate) x 2 bytes`` per trial block (SmolLM2-135M, 6 sources, 32 x 256 tokens: 0.32 GB a
block), checked before the forward pass.

Measured on the default model at seeds 0, 1 and 2 (docs/results/pareto.md#balanced-trial-on-smollm2-135m):
not better. At seed 0 math windows served code nearly as well as code's own at the layer level, so
code got 1 window of 32, and after SparseGPT code perplexity kept no more than with ``balanced``'s
2; at seeds 1 and 2 the search took other paths from nearly the same errors and gave code 6 and
3. On Gemma-3-270M at seed 0 it gave wiki and C4 no window and kept the least of the mixtures
after SparseGPT (docs/results/pareto.md#balanced-trial-on-gemma-3-270m-seed-0).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Callable, Sequence

import numpy as np
import torch

from colakit.compress import hessian
from colakit.compress.methods.base import get_method
from colakit.curate.coverage import target_weights
from colakit.curate.select.base import Selection, register
from colakit.curate.select.cola import ColaSelector
from colakit.errors import ColakitError
from colakit.model.hooks import forward_until_stop, linear_input_hook, stop_after
from colakit.model.layers import DecoderLayout, find_decoder, in_features, weight_matrix

DEFAULT_METHODS = ("gptq", "sparsegpt")

log = logging.getLogger(__name__)

TRIAL_FIX = "use the balanced method for this model"  # the ColakitError's fix when a block lacks a site


def trial_block_indices(num_layers: int, count: int) -> list[int]:
    """``count`` blocks at the middles of equal slices of the depth (2 of 30: 7, 22; 4 of 30: 3, 11, 18, 26)."""
    if count < 1:
        raise ColakitError(f"trial_blocks {count} is not positive", "use e.g. 2 (the default)")
    count = min(count, num_layers)
    return sorted({int((2 * k + 1) * num_layers / (2 * count)) for k in range(count)})


def _sink_at(sink: Callable, key, mask: torch.Tensor, first: int) -> Callable[[torch.Tensor], None]:
    return lambda x: sink(key, x, mask, first)


@torch.no_grad()
def forward_sites(model, layout: DecoderLayout, blocks: Sequence[int], seqs: Sequence[Sequence[int]], pad_id: int,
                  sink: Callable, batch_size: int = 8) -> None:
    """``sink(key, x [B, T, C], mask [B, T], first_row)`` with every (block, site) input of ``seqs``, batch by
    batch; the forward stops after the last block."""
    from colakit.curate.process import pad_right

    device = next(model.parameters()).device
    linears = {(b, site): layout.spec(b).linears[names[0]]
               for b in blocks for site, names in layout.input_sites(b, TRIAL_FIX).items()}
    for start in range(0, len(seqs), batch_size):
        ids, mask = pad_right(seqs[start:start + batch_size], pad_id)
        mask = mask.bool().to(device)
        handles = [lin.register_forward_pre_hook(linear_input_hook(mask, _sink_at(sink, key, mask, start), TRIAL_FIX))
                   for key, lin in linears.items()]
        handles.append(stop_after(layout.layers[max(blocks)]))
        try:
            forward_until_stop(model, input_ids=ids.to(device), attention_mask=mask.long(), use_cache=False)
        finally:
            for h in handles:
                h.remove()


def input_moments(model, layout: DecoderLayout, blocks: Sequence[int], seqs: Sequence[Sequence[int]],
                  pad_id: int) -> dict[tuple[int, str], torch.Tensor]:
    """``X^T X / n`` over the real tokens of ``seqs`` at each (block, site)."""
    stats: dict = {}

    def add(key, x, mask, _first):
        if key not in stats:
            stats[key] = hessian.HessianStats(x.shape[-1], x.device)
        stats[key].add_batch(x[mask])

    forward_sites(model, layout, blocks, seqs, pad_id, add)
    return {key: s.hessian for key, s in stats.items()}


def window_inputs(model, layout: DecoderLayout, blocks: Sequence[int], seqs: Sequence[Sequence[int]],
                  pad_id: int) -> list[dict[tuple[int, str], torch.Tensor]]:
    """Per window, its real tokens' inputs at each (block, site), in float16 (a set's moments are
    summed from its own windows, so a trial sees the noise of the budget it judges)."""
    rows: list[dict] = [{} for _ in seqs]

    def keep(key, x, mask, first):
        for r in range(x.shape[0]):
            rows[first + r][key] = x[r][mask[r]].to(torch.float16)

    forward_sites(model, layout, blocks, seqs, pad_id, keep)
    return rows


class SetMoments:
    """``X^T X / n`` of a set given as window counts per source (the first ``n_k`` of each source's
    kept windows), updated from the last set by adding and removing only the windows that differ: a
    trial moves one or two windows, and summing a whole set's moments again costs more than its
    compression (float64 sums, so that what is removed cancels what was added)."""

    def __init__(self, inputs: dict[str, list[dict]]):
        self.inputs = inputs
        self.counts = dict.fromkeys(inputs, 0)
        first = next(w for ws in inputs.values() for w in ws)
        self.sums = {key: torch.zeros(x.shape[-1], x.shape[-1], dtype=torch.float64, device=x.device)
                     for key, x in first.items()}
        self.tokens = 0

    def _add(self, window: dict, sign: int) -> None:
        for key, x in window.items():
            x = x.double()
            self.sums[key].addmm_(x.t(), x, alpha=sign)
        self.tokens += sign * len(next(iter(window.values())))

    def of(self, counts: dict[str, int]) -> dict[tuple[int, str], torch.Tensor]:
        for k, n in counts.items():
            for window in self.inputs[k][n:self.counts[k]]:
                self._add(window, -1)
            for window in self.inputs[k][self.counts[k]:n]:
                self._add(window, 1)
            self.counts[k] = n
        return {key: (total / max(self.tokens, 1)).float() for key, total in self.sums.items()}


class DenseBlocks:
    """The trial blocks' linears as ``(block, site, name, float weight [out, in])``, and each one's dense
    output energy ``||W x||^2`` under every capability's moments: no trial changes either, so both are
    computed once per curation."""

    def __init__(self, layout: DecoderLayout, blocks: Sequence[int], probe_moments: dict[str, dict]):
        self.probe_moments = probe_moments
        self.linears = []
        for b in blocks:
            modules = layout.spec(b).linears  # one block spec per block, not one per linear
            self.linears += [(b, site, name, weight_matrix(modules[name]).detach().float())
                             for site, names in layout.input_sites(b, TRIAL_FIX).items() for name in names]
        self.energy = {(b, name, cap): float(((w @ h[(b, site)]) * w).sum())
                       for b, site, name, w in self.linears for cap, h in probe_moments.items()}


def trial_errors(dense: DenseBlocks, methods: Sequence, mixed: dict) -> dict[tuple[str, str], float]:
    """(method, capability) -> mean relative output error over the blocks' linears, each compressed on ``mixed``."""
    errors: dict[tuple[str, str], float] = {}
    for method in methods:
        sums = dict.fromkeys(dense.probe_moments, 0.0)
        for b, site, name, w in dense.linears:
            stats = method.make_stats(w.shape[1], w.device)
            stats.assign(mixed[(b, site)])
            with hessian.single_cpu_thread(w.device):
                new, _ = method.solve(stats, w, f"block {b} {name}")
            delta = w - new
            for cap, moments in dense.probe_moments.items():
                den = dense.energy[(b, name, cap)]
                sums[cap] += float(((delta @ moments[(b, site)]) * delta).sum()) / den if den > 0 else 0.0
        errors.update({(method.name, cap): total / len(dense.linears) for cap, total in sums.items()})
    return errors


def search_shares(sources: list[str], available: dict[str, int], errors_of: Callable[[dict[str, int]], dict],
                  weights: dict[str, float], budget: int, unit: int, steps: int) -> tuple[dict[str, int], dict]:
    """Window counts per source by local search on the largest weighted deficit (module docstring, 3-4)."""
    single = {}
    for k in sources:
        alone = dict.fromkeys(sources, 0)
        alone[k] = min(budget, available[k])
        single[k] = errors_of(alone)
    keys = list(single[sources[0]])
    best = {mc: min(single[k][mc] for k in sources) for mc in keys}
    champion = {mc: next(k for k in sources if single[k][mc] == best[mc]) for mc in keys}

    def deficits(err: dict) -> dict:
        return {mc: weights[mc[1]] * (1.0 - best[mc] / err[mc]) if err[mc] > 0 else 0.0 for mc in keys}

    def worst(err: dict) -> float:
        return max(deficits(err).values())

    counts = even_split(sources, available, budget)
    err = errors_of(counts)
    path = [{"counts": dict(counts), "worst_deficit": worst(err)}]
    for _ in range(steps):
        d = deficits(err)
        needy = max(keys, key=lambda mc: (d[mc], -keys.index(mc)))
        to = champion[needy]
        # donors with the most slack first: those whose capabilities (as champion) are furthest from need
        slack = {k: max([d[mc] for mc in keys if champion[mc] == k], default=-np.inf) for k in sources}
        for frm in sorted(sources, key=lambda k: (slack[k], sources.index(k))):
            move = min(unit, counts[frm], available[to] - counts[to])
            if frm == to or move < 1:
                continue
            new = {**counts, frm: counts[frm] - move, to: counts[to] + move}
            e = errors_of(new)
            if worst(e) < worst(err) - 1e-12:  # the first move that lowers the largest deficit
                counts, err = new, e
                path.append({"counts": dict(counts), "worst_deficit": worst(err), "for": "/".join(needy)})
                break
        else:
            if unit == 1:
                break
            unit //= 2
    info = {"single_source_error": {k: _by_key(v) for k, v in single.items()},
            "champion": {"/".join(mc): k for mc, k in champion.items()},
            "fraction_of_best": _by_key({mc: best[mc] / err[mc] if err[mc] > 0 else 1.0 for mc in keys}),
            "search": path}
    return counts, info


def _by_key(d: dict) -> dict:
    return {"/".join(mc): round(float(v), 6) for mc, v in d.items()}


def even_split(sources: list[str], available: dict[str, int], budget: int) -> dict[str, int]:
    """``budget`` windows split as evenly as the sources' pools allow (the first sources take the remainder)."""
    counts = dict.fromkeys(sources, 0)
    for _ in range(budget):
        open_ = [k for k in sources if counts[k] < available[k]]
        k = min(open_, key=lambda s: (counts[s], sources.index(s)))
        counts[k] += 1
    return counts


@register
class BalancedTrialSelector(ColaSelector):
    """COLA stage 3 with shares from a trial compression's max-min fraction of the best single source."""

    name = "balanced-trial"
    needs_model = True
    uses_coverage = False  # the trial reads the probes' own moments, not their features

    def __init__(self, trial_blocks: int = 2, probes_per_capability: int = 64,
                 steps: int = 24, unit: int | None = None, methods: list[str] | None = None, max_inputs_gib: float = 4.0,
                 n_init: int = 2, niter: int = 50, max_train: int | None = None, swaps: int | None = None):
        for key, value in (("trial_blocks", trial_blocks), ("probes_per_capability", probes_per_capability)):
            if value < 1:
                raise ColakitError(f"{key} {value} is not positive", f"use e.g. {key}=4")
        for name in methods or ():
            if not get_method(name).needs_data:
                raise ColakitError(f"method {name!r} needs no calibration data: a trial cannot rank sets with it",
                                   "use gptq or sparsegpt")
        super().__init__(n_init=n_init, niter=niter, source_selection=True, max_train=max_train, swaps=swaps)
        self.trial_blocks = trial_blocks
        self.probes_per_capability, self.steps, self.unit = probes_per_capability, steps, unit
        self.methods = list(methods) if methods else None
        self.max_inputs_gib = max_inputs_gib

    def params(self) -> dict:
        return {k: v for k, v in super().params().items() if k != "source_selection"}

    def _trial_methods(self, model, config) -> list:
        names = self.methods or ([config.compression] if config.compression else list(DEFAULT_METHODS))
        made = []
        for name in names:
            method = get_method(name)()
            if method.quantizes and getattr(method, "group_size", None) is not None:
                method = dataclasses.replace(method, group_size="auto")  # a group size that fits this model
            method.validate()
            method.check_model(model)
            made.append(method.resolve(model, []))
        return made

    def select(self, candidates, features, budget: int, seed: int) -> Selection:
        from colakit.curate.pipeline import build_probes, pool_documents

        self.check_budget(candidates, budget)
        model, tokenizer, config = self.bound()
        started = time.perf_counter()
        sources = list(dict.fromkeys(c.source for c in candidates))
        members = {k: [i for i, c in enumerate(candidates) if c.source == k] for k in sources}
        weights = {c: w for c, w in target_weights(config.target, config.weights).items() if w > 0}
        probes = build_probes(config, tokenizer, list(weights), per_capability=self.probes_per_capability,
                              exclude=pool_documents(candidates))
        empty = [c for c, p in probes.items() if not p]
        if empty:
            raise ColakitError(f"no probe windows for {', '.join(empty)} outside the pool's documents",
                               "lower --pool, or drop those capabilities from the target's weights")
        layout = find_decoder(model)
        blocks = trial_block_indices(layout.num_layers, self.trial_blocks)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        rng = np.random.default_rng(seed)
        order = {k: rng.permutation(rows)[:budget].tolist() for k, rows in members.items()}  # a trial's n_k windows: the first n_k
        width = sum(in_features(layout.spec(b).linears[names[0]]) for b in blocks
                    for names in layout.input_sites(b, TRIAL_FIX).values())
        need = sum(len(candidates[i].input_ids) for rows in order.values() for i in rows) * width * 2 / 2**30
        if need > self.max_inputs_gib:
            raise ColakitError(f"balanced-trial would keep {need:.1f} GiB of layer inputs ({len(blocks)} blocks, "
                               f"{len(sources)} sources x up to {budget} windows), over max_inputs_gib={self.max_inputs_gib}",
                               "lower -p trial_blocks, --n or --seq-len, or raise -p max_inputs_gib")
        inputs = {k: window_inputs(model, layout, blocks, [candidates[i].input_ids for i in rows], pad)
                  for k, rows in order.items()}
        probe_moments = {c: input_moments(model, layout, blocks, [p.input_ids for p in group], pad)
                         for c, group in probes.items()}
        methods = self._trial_methods(model, config)
        memo: dict[tuple, dict] = {}
        dense = DenseBlocks(layout, blocks, probe_moments)
        moments = SetMoments(inputs)

        def errors_of(counts: dict[str, int]) -> dict:
            key = tuple(counts[k] for k in sources)
            if key not in memo:
                memo[key] = trial_errors(dense, methods, moments.of(counts))
            return memo[key]

        unit = self.unit or max(1, budget // 16)
        counts, info = search_shares(sources, {k: len(v) for k, v in order.items()}, errors_of, weights,
                                     budget, unit, self.steps)
        self._shares = {k: n for k, n in counts.items() if n}
        self._sources = [c.source for c in candidates]
        self._plan_info = {"weights": weights, "shares": self._shares, "trial_blocks": blocks,
                           "trial_methods": [m.name for m in methods], "trials": len(memo),
                           "probes_per_capability": {c: len(p) for c, p in probes.items()}, **info}
        log.info("balanced-trial: shares %s from %d trials in %.0f s", self._shares, len(memo),
                 time.perf_counter() - started)
        return super().select(candidates, features, budget, seed)
