"""The checks of a curation budget that need nothing but the numbers, in a module that imports
nothing heavy: ``colakit curate`` runs them before the library loads (an argument error answers in
under a second) and ``CurateConfig.validate`` runs the same ones."""

from __future__ import annotations

from colakit.errors import ColakitError


def check_budget(n: int | None, seq_len: int | None, pool_per_source: int | None = None,
                 max_context: int | None = None) -> None:
    """Refuse a budget no run can meet; ``None`` is a default, checked where it is resolved."""
    if n is not None and n < 1:
        raise ColakitError(f"--n {n} is not positive", "ask for at least one sample")
    if seq_len is not None and seq_len < 8:
        raise ColakitError(f"--seq-len {seq_len} is too short", "use at least 8 tokens (COLA uses 512-2048)")
    if seq_len is not None and max_context is not None and seq_len > max_context:
        raise ColakitError(f"--seq-len {seq_len} is longer than the model's context ({max_context} tokens)",
                           f"use --seq-len {max_context} or less")
    if pool_per_source is not None and pool_per_source < 1:
        raise ColakitError(f"--pool {pool_per_source} is not positive",
                           "give at least one candidate window per source, or leave --pool out (max(8n, 256))")
