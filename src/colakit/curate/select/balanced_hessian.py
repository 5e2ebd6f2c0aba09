"""``balanced-hessian``: ``balanced`` with each capability's coverage measured as its second moments' transfer risk.

``balanced`` measures a capability's coverage by facility location: each probe counts its nearest
pick. One code window near the code probes then "covers" code, whatever share of the Hessian's
mass code needs; after SparseGPT its sets kept code worst of the mixtures (docs/results/pareto.md:
2 code windows of 32). GPTQ and SparseGPT solve a least-squares problem per layer on the
calibration second moments ``H_S``, and for least squares fitted on one input distribution and
judged on another, the excess risk is proportional to ``tr(H_S^-1 H_c)`` (the classical
covariate-shift result for linear regression). That is the coverage measured here, in the
activation features (centred on the pool's mean, as ``balanced`` does):

- ``M_S = mean of f f^T over the picks + ridge I`` (``ridge`` times the pool's mean eigenvalue, so a
  direction no pick spans costs a finite amount), ``Sigma_c`` = the mean of ``p p^T`` over the
  capability's probes; the risk ``R_c(S) = tr(M_S^-1 Sigma_c)``, and ``r_c = R_c(pool) / R_c(S)``.
- A direction a capability needs is covered in proportion to the mass the picks put there, so a
  capability whose windows look unlike the rest keeps drawing picks until its moments are matched.
- The rest is ``balanced``'s: water-filling on the largest weighted deficit ``w_c (1 - r_c)``, the
  pick that lowers that capability's risk most (Sherman-Morrison: one rank-one update per pick),
  ties broken by the weighted sum of the risk drops; the picks per source are the shares, and
  stage 3 is COLA's medoids inside each source.
"""

from __future__ import annotations

import numpy as np

from colakit.curate.coverage import weighted_capabilities
from colakit.curate.select.balanced import BalancedSelector
from colakit.curate.select.base import register
from colakit.errors import ColakitError


def maxmin_transfer(features: np.ndarray, probes: dict[str, np.ndarray], weights: dict[str, float],
                    budget: int, ridge: float = 0.1) -> tuple[list[int], dict[str, float]]:
    """Water-filling greedy on second-moment transfer risk: (picks in order, final r_c per capability)."""
    caps = weighted_capabilities(features, probes, weights, budget)
    x = features.astype(np.float64)
    mean = x.mean(axis=0)
    cand = x - mean
    eye = np.eye(cand.shape[1])
    pool_moment = cand.T @ cand / len(cand)
    lam = ridge * float(np.trace(pool_moment)) / cand.shape[1]
    if not lam > 0:
        raise ColakitError("the candidate features have no spread around their mean",
                           "use more than one distinct candidate window")
    sigma = {c: (p := probes[c].astype(np.float64) - mean).T @ p / len(p) for c in caps}

    def risk(moment: np.ndarray) -> dict[str, float]:  # tr(M^-1 Sigma_c) per capability
        inv = np.linalg.inv(moment)
        return {c: float(np.sum(inv * sigma[c])) for c in caps}

    full = risk(pool_moment + lam * eye)
    picked = np.zeros_like(eye)  # the sum of f f^T over the picks
    chosen: list[int] = []
    available = np.ones(len(cand), dtype=bool)
    now = risk(lam * eye)  # no pick yet: M_S is the ridge alone
    for k in range(budget):
        # with one more pick, M_S = (picked + f f^T) / (k + 1) + lam I = (B + f f^T) / (k + 1), B as below;
        # Sherman-Morrison: tr((B + f f^T)^-1 S) = tr(B^-1 S) - f^T B^-1 S B^-1 f / (1 + f^T B^-1 f)
        inv = np.linalg.inv(picked + (k + 1) * lam * eye)
        bf = cand @ inv  # [N, d]: B^-1 f per candidate
        denom = 1.0 + np.einsum("nd,nd->n", bf, cand)
        drop = {c: np.einsum("nd,nd->n", bf @ sigma[c], bf) / denom / float(np.sum(inv * sigma[c])) for c in caps}
        neediest = max(caps, key=lambda c: (weights[c] * (1.0 - full[c] / now[c]), -caps.index(c)))
        total = sum(weights[c] * drop[c] for c in caps)  # each capability's relative drop in risk
        own = np.where(available, drop[neediest], -np.inf)
        top = np.flatnonzero(own >= own.max() - 1e-12)
        pick = int(top[np.argmax(total[top])])
        chosen.append(pick)
        available[pick] = False
        picked += np.outer(cand[pick], cand[pick])
        now = risk(picked / (k + 1) + lam * eye)
    return chosen, {c: full[c] / now[c] for c in caps}


@register
class BalancedHessianSelector(BalancedSelector):
    """``balanced`` whose per-capability coverage is second-moment transfer risk (module docstring)."""

    name = "balanced-hessian"

    def __init__(self, ridge: float = 0.1, probes_per_capability: int = 64, disjoint_probes: bool = True,
                 n_init: int = 2, niter: int = 50, max_train: int | None = None, swaps: int | None = None):
        if not ridge > 0:
            raise ColakitError(f"ridge {ridge} is not positive", "use e.g. 0.1 (the default)")
        super().__init__(probes_per_capability=probes_per_capability, disjoint_probes=disjoint_probes,
                         centre=True, n_init=n_init, niter=niter, max_train=max_train, swaps=swaps)
        self.ridge = ridge

    def params(self) -> dict:
        return {k: v for k, v in super().params().items() if k != "centre"}

    ratio_key = "risk_ratio"

    def greedy(self, features, probes: dict, weights: dict[str, float], budget: int) -> tuple[list[int], dict]:
        return maxmin_transfer(features, probes, weights, budget, self.ridge)
