"""The layer Hessian ``H = X^T X / n`` shared by GPTQ and SparseGPT, and its damped inverse.

Both methods minimise ``||W X - W' X||^2`` for one linear, whose Hessian in ``W`` is ``X^T X``
(the constant factor 2 cancels). Inputs that are always zero ("dead" columns) make ``H``
singular: their weights cannot matter, so they are set to zero and ``H[j, j] = 1``. A small
ridge ``damp * mean(diag H)`` keeps the Cholesky factorisation stable; when it still fails (tiny
or degenerate calibration sets), the ridge grows tenfold at a time, with a warning.
"""

from __future__ import annotations

import contextlib
import tempfile
import warnings

import torch

from colakit.errors import ColakitError

MAX_ESCALATIONS = 8


class NumericalWarning(UserWarning):
    """A solver had to change its numerics (e.g. stronger dampening) to stay finite."""


@contextlib.contextmanager
def single_cpu_thread(device: torch.device):
    """Run the column-by-column solvers on one CPU thread.

    Their loops are thousands of tiny ops; OpenMP hand-offs between threads cost more than they
    save, and far more on a busy machine (4 SmolLM2 blocks of GPTQ: 110 s on 2 threads vs 8 s on
    1, load ~5 on 2 cores). Other work (forwards, Hessian products) keeps every thread.
    """
    if torch.device(device).type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class HessianStats:
    """Accumulates ``X^T X`` in float32 over the (non-padded) input rows of one linear."""

    def __init__(self, columns: int, device: torch.device):
        self.xtx = torch.zeros(columns, columns, dtype=torch.float32, device=device)
        self.count = 0
        self._normalized = False

    def add_batch(self, x: torch.Tensor) -> None:
        if self._normalized:
            raise RuntimeError("add_batch after the Hessian was read")
        x = x.reshape(-1, x.shape[-1]).float()
        self.xtx.addmm_(x.t(), x)
        self.count += x.shape[0]

    def assign(self, h: torch.Tensor) -> None:
        """Start from a known ``X^T X / n`` instead of batches (balanced-trial's mixtures of sources' moments)."""
        self.xtx.copy_(h)
        self.count, self._normalized = 1, False

    @property
    def hessian(self) -> torch.Tensor:
        """``X^T X / n``, once every batch is in: the sum is divided in place on first reading, so no
        second [in, in] copy exists (an 8B model's down_proj Hessian is 0.8 GB in float32)."""
        if not self._normalized:
            self.xtx.div_(max(self.count, 1))
            self._normalized = True
        return self.xtx


def prepare(w: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A copy of ``w`` with dead input columns zeroed, and ``h`` given a unit diagonal there (a copy
    only when there are dead columns: ``h`` is the statistics' own Hessian, read again afterwards)."""
    w = w.clone()
    dead = torch.diag(h) == 0
    if dead.any():
        h = h.clone()
        h[dead, dead] = 1
        w[:, dead] = 0
    return w, h


def inverse_cholesky(h: torch.Tensor, damp: float, what: str = "layer") -> tuple[torch.Tensor, float]:
    """Upper Cholesky factor of ``(H + ridge I)^-1`` and the relative ridge finally used, as a tensor
    of its own; ``h`` is left as it was. ``factored`` is the same for a solver that holds it only
    while it runs (without the copy)."""
    with factored(h, damp, what) as (upper, rel):
        return (upper.clone() if upper.data_ptr() == h.data_ptr() else upper), rel


@contextlib.contextmanager
def factored(h: torch.Tensor, damp: float, what: str = "layer"):
    """``(U, ridge)`` as ``inverse_cholesky`` computes them, usable inside; ``h`` is as it was on exit.

    Memory beside ``h``: two [in, in] matrices while factorising, one while ``U`` is in use; or,
    when ``h`` has at least ``SPILL_BYTES`` (an 8B model's down_proj: 784 MiB in float32), one
    while factorising and none afterwards: ``h``'s own memory is the workspace and then holds
    ``U``, while its values wait in a temporary file (on a GPU: in host memory) until the exit
    reads them back. Both paths compute the same numbers.
    """
    mean_diag = torch.diag(h).mean()
    if not torch.isfinite(mean_diag):
        raise ColakitError(f"the calibration activations of {what} are not finite (NaN/Inf)",
                           "check the model dtype (use float32 on CPU) and the calibration set")
    if not (h.is_contiguous() and h.numel() * h.element_size() >= SPILL_BYTES):
        yield _escalate(lambda ridge: _factor(h.clone(), ridge), None, damp, mean_diag, what)
        return
    with _Spilled(h) as saved:
        try:
            yield _escalate(lambda ridge: _factor(h, ridge), saved, damp, mean_diag, what)
        finally:
            saved.restore()


def _escalate(factor, saved: _Spilled | None, damp: float, mean_diag: torch.Tensor, what: str):
    """``factor(ridge)`` with the ridge grown tenfold until it succeeds: (U, relative ridge); each
    failed attempt on a spilled Hessian gets its values back before the next."""
    for attempt in range(MAX_ESCALATIONS + 1):
        rel = damp * 10**attempt
        upper = factor(float(rel * mean_diag))
        if upper is not None:
            if attempt:
                warnings.warn(f"{what}: Hessian not positive definite with damp={damp}; "
                              f"used damp={rel:g} (too little or degenerate calibration data?)",
                              NumericalWarning, stacklevel=4)
            return upper, rel
        if saved is not None:
            saved.restore()  # a retry starts from the Hessian as it was
    raise ColakitError(f"the Hessian of {what} stays singular even with damp={rel:g}",
                       "use more (and more varied) calibration samples")


# Hessians this large are factorised in their own memory (their values kept in a temporary file meanwhile)
SPILL_BYTES = 256 * 2**20


def _factor(work: torch.Tensor, ridge: float) -> torch.Tensor | None:
    """``U`` with ``U^T U = (work + ridge I)^-1``, computed in ``work``'s memory plus one [in, in] buffer
    (``work`` is overwritten); None when the damped matrix is not positive definite."""
    info = torch.empty((), dtype=torch.int32, device=work.device)
    low = work.t()  # symmetric: its transpose is the same matrix in the column-major layout LAPACK works in
    low.diagonal().add_(ridge)
    torch.linalg.cholesky_ex(low, out=(low, info))
    if info != 0:
        return None
    # (L^-1)^T L^-1 = H^-1; a triangular solve is ~40x faster than cholesky_inverse on CPU here
    low_inv = torch.eye(work.shape[0], dtype=work.dtype, device=work.device).t()
    torch.linalg.solve_triangular(low, low_inv, upper=False, out=low_inv)
    torch.matmul(low_inv.t(), low_inv, out=work)
    del low_inv
    torch.linalg.cholesky_ex(work, upper=True, out=(work, info))
    return work if info == 0 and _all_finite(work) else None


def _all_finite(t: torch.Tensor, rows: int = 1024) -> bool:
    """``torch.isfinite(t).all()`` a slab of rows at a time: isfinite on the whole matrix allocates
    its absolute value (another [in, in] float32, 784 MiB for an 8B model's down_proj) and two masks."""
    return all(bool(torch.isfinite(t[i:i + rows]).all()) for i in range(0, t.shape[0], rows))


class _Spilled:
    """A matrix's values saved outside it (a temporary file; host memory for a GPU tensor), to put back with ``restore``."""

    def __init__(self, h: torch.Tensor):
        self.h = h

    def __enter__(self) -> _Spilled:
        if self.h.device.type == "cpu":
            self.file = tempfile.TemporaryFile()
            self.file.write(_bytes(self.h))
            self.copy = None
        else:
            self.file, self.copy = None, self.h.to("cpu", copy=True)
        return self

    def restore(self) -> None:
        if self.copy is not None:
            self.h.copy_(self.copy)
            return
        self.file.seek(0)
        if self.file.readinto(_bytes(self.h)) != self.h.numel() * self.h.element_size():
            raise ColakitError("a Hessian saved to a temporary file came back short",
                               "check the free space of the temporary directory (TMPDIR)")

    def __exit__(self, *exc) -> None:
        if self.file is not None:
            self.file.close()
        self.copy = None


def _bytes(t: torch.Tensor) -> memoryview:
    return memoryview(t.numpy()).cast("B")


def error_terms(w: torch.Tensor, w_new: torch.Tensor, h: torch.Tensor) -> tuple[float, float]:
    """``(||(W - W') X||^2, ||W X||^2) / n`` computed from ``H = X^T X / n``."""
    d = (w - w_new).float()
    return float(((d @ h) * d).sum()), float(((w.float() @ h) * w.float()).sum())


def relative_error(w: torch.Tensor, w_new: torch.Tensor, h: torch.Tensor) -> float:
    """``||(W - W') X||^2 / ||W X||^2``."""
    num, den = error_terms(w, w_new, h)
    return num / den if den > 0 else 0.0
