"""The per-linear algorithms on synthetic layers: grids, exact sparsity, error vs baselines, degenerate Hessians."""

import warnings

import pytest
import torch

from colakit.compress.hessian import NumericalWarning, relative_error
from colakit.compress.methods.gptq import GPTQSolver
from colakit.compress.methods.magnitude import magnitude_prune
from colakit.compress.methods.sparsegpt import SparseGPTSolver
from colakit.compress.methods.wanda import WandaSolver
from colakit.compress.quantizer import quantize_groups


def correlated_inputs(n=2048, cols=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(cols, cols, generator=g) / cols**0.5
    scale = torch.logspace(-1, 1, cols)[torch.randperm(cols, generator=g)]  # a few salient channels
    return (torch.randn(n, cols, generator=g) @ mix + 0.1 * torch.randn(n, cols, generator=g)) * scale


def weight(rows=64, cols=128, seed=1):
    return torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed))


def distinct_per_group(w, group_size):
    g = w.reshape(w.shape[0], -1, group_size)
    return max(len(torch.unique(g[r, k])) for r in range(g.shape[0]) for k in range(g.shape[1]))


@pytest.mark.parametrize("bits,sym", [(2, False), (3, True), (4, False), (8, True)])
def test_rtn_grid_has_at_most_2_pow_bits_values_and_keeps_zero(bits, sym):
    w = weight()
    w[:, :7] = 0
    q = quantize_groups(w, bits, 32, sym)
    assert distinct_per_group(q, 32) <= 2**bits
    assert (q[:, :7] == 0).all()
    assert quantize_groups(torch.zeros(4, 32), bits, 32, sym).eq(0).all()  # empty group: no 0/0


def test_more_bits_less_rounding_error():
    w = weight()
    errs = [float((quantize_groups(w, b, 32, False) - w).pow(2).mean()) for b in (2, 3, 4, 8)]
    assert errs == sorted(errs, reverse=True) and errs[-1] < 1e-4


def hessian_solver(cls, x):
    s = cls(x.shape[1], x.device)
    for chunk in x.split(500):
        s.add_batch(chunk)
    return s


@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_beats_rtn_and_keeps_contiguous_groups(act_order):
    x, w = correlated_inputs(), weight()
    solver = hessian_solver(GPTQSolver, x)
    q, info = solver.solve(w, bits=3, group_size=32, sym=False, act_order=act_order, block_size=32)
    h = solver.hessian
    assert relative_error(w, q, h) < 0.8 * relative_error(w, quantize_groups(w, 3, 32, False), h)
    assert distinct_per_group(q, 32) <= 8  # groups are the original consecutive columns, even with act_order
    assert info["damp"] == 0.01


def test_sparsegpt_exact_sparsity_and_beats_magnitude():
    x, w = correlated_inputs(), weight()
    solver = hessian_solver(SparseGPTSolver, x)
    for sparsity in (0.5, 0.6):
        p, _ = solver.solve(w, sparsity, block_size=64)
        assert int((p == 0).sum()) == round(w.numel() * sparsity)
        mag = magnitude_prune(w, sparsity)
        assert relative_error(w, p, solver.hessian) < 0.8 * relative_error(w, mag, solver.hessian)


@pytest.mark.parametrize("nm", [(2, 4), (4, 8)])
def test_nm_patterns_are_valid(nm):
    x, w = correlated_inputs(), weight()
    n, m = nm
    pruned = {
        "sparsegpt": hessian_solver(SparseGPTSolver, x).solve(w, 0.5, nm=nm, block_size=30)[0],
        "wanda": hessian_solver(WandaSolver, x).solve(w, 0.5, nm=nm)[0],
        "magnitude": magnitude_prune(w, 0.5, nm),
    }
    for name, p in pruned.items():
        nonzero = (p != 0).reshape(p.shape[0], -1, m).sum(-1)
        assert (nonzero == n).all(), name


def test_sparsegpt_joint_quantization_prunes_and_quantizes():
    x, w = correlated_inputs(), weight()
    p, _ = hessian_solver(SparseGPTSolver, x).solve(w, 0.5, nm=(2, 4), bits=4, group_size=32)
    assert ((p != 0).reshape(p.shape[0], -1, 4).sum(-1) <= 2).all()
    assert distinct_per_group(p, 32) <= 16


def test_wanda_prunes_per_output_row_by_weight_times_input_norm():
    x = torch.ones(10, 8)
    x[:, 0] = 100.0  # feature 0 is salient: its small weights must survive
    w = torch.tensor([[0.1, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]] * 2)
    p, _ = hessian_solver(WandaSolver, x).solve(w, 0.5)
    assert (p != 0).sum(1).tolist() == [4, 4]
    assert (p[:, 0] != 0).all() and (p[:, 1:4] == 0).all()


@pytest.mark.parametrize("cls", [GPTQSolver, SparseGPTSolver])
def test_singular_hessian_escalates_damping_and_stays_finite(cls):
    x = torch.zeros(3, 64)
    x[:, :5] = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])  # rank 1, 59 dead inputs
    solver = hessian_solver(cls, x)
    solver.xtx[5, 5] = -3.0 * solver.count  # indefinite, as low-precision accumulation can produce
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kw = dict(bits=4, group_size=32, sym=False) if cls is GPTQSolver else dict(sparsity=0.5)
        out, info = cls.solve(solver, weight(16, 64), **kw)
    assert torch.isfinite(out).all()
    assert info["damp"] > 0.01
    assert any(issubclass(c.category, NumericalWarning) for c in caught)


@pytest.mark.parametrize("indefinite", [False, True])
def test_large_hessians_are_factorised_in_place_with_the_same_numbers(monkeypatch, indefinite):
    """Above SPILL_BYTES the Hessian's own memory is the workspace (its values wait in a temporary
    file): the factor, the ridge and the Hessian afterwards are those of the in-memory path."""
    from colakit.compress import hessian

    h = hessian_solver(GPTQSolver, correlated_inputs()).hessian
    if indefinite:  # forces the ridge to grow: each failed attempt restores the Hessian from the file
        h[3, 3] = -50.0 * float(torch.diag(h).mean())
    before = h.clone()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NumericalWarning)
        in_memory, rel = hessian.inverse_cholesky(h, 0.01)
        monkeypatch.setattr(hessian, "SPILL_BYTES", 0)
        spilled, rel_spilled = hessian.inverse_cholesky(h, 0.01)
    assert torch.equal(h, before)
    assert torch.equal(in_memory, spilled) and rel == rel_spilled
    assert (rel > 0.01) == indefinite
    assert torch.allclose(spilled.t() @ spilled @ (h + rel * torch.diag(h).mean() * torch.eye(h.shape[0])),
                          torch.eye(h.shape[0]), atol=1e-3)


@pytest.mark.parametrize("cls, kw", [(GPTQSolver, dict(bits=4, group_size=32, sym=False)),
                                     (GPTQSolver, dict(bits=4, group_size=32, sym=True, act_order=True)),
                                     (SparseGPTSolver, dict(sparsity=0.5, nm=(2, 4), bits=4, group_size=32))])
def test_a_solve_whose_factor_takes_the_hessians_memory_gives_the_same_weights_and_hessian(monkeypatch, cls, kw):
    """With a spilled Hessian the factor lives in its memory during the solve (hessian.factored): the
    weights are those of the in-memory path, and the Hessian is back, bit for bit, for the error afterwards."""
    from colakit.compress import hessian

    solver = hessian_solver(cls, correlated_inputs())
    before = solver.hessian.clone()
    in_memory, _ = solver.solve(weight(), **kw)
    monkeypatch.setattr(hessian, "SPILL_BYTES", 0)
    w = weight()
    spilled, _ = solver.solve(w, **kw)
    assert torch.equal(in_memory, spilled)
    assert torch.equal(solver.hessian, before) and torch.equal(w, weight())  # the input is left as it was
