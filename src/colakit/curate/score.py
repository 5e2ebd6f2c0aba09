"""``colakit score``: rank calibration sets before compressing anything.

The COLA paper names representativeness and diversity in activation space as what decides
calibration quality. This measures both for any CalibrationSet (see ``colakit.curate.coverage``): the
set's samples and the capability probes go through the same feature extractor, and the
facility-location coverage of the target's probes, the spread of the set, and their mean come out.

The probes come from the *held-out* part of each capability's sources by default: documents that
no stage of curation reads (pools and the curation probes read only the calibration part). A set
that a selector built to cover its own probes is then not scored on those probes, so the proxy
can rank COLA-like methods against the rest fairly. ``probes_from="calibration"`` gives the
probes curation uses (the earlier behaviour). The held-out part is also where the perplexity
evaluation tasks read their documents: the proxy looks at the distribution that is measured.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from colakit.calibset import CalibrationSet
from colakit.curate.coverage import proxy_scores, target_weights
from colakit.curate.features import FeatureConfig, FeatureProgress
from colakit.curate.pipeline import CurateConfig, build_probes, features_with_probes
from colakit.curate.process import Candidate
from colakit.errors import ColakitError
from colakit.model.load import ModelHandle

PROBE_SPLITS = ("heldout", "calibration")  # where score's probes come from; the first is the default


# what score_set returns as single numbers, in the order the command line and a run's table show them
SCORE_KEYS = ("representativeness", "diversity", "proxy", "representativeness_centred")


def score_set(calib: CalibrationSet | str | Path, *, model: str | None = None, target: str = "general",
              weights: dict | None = None, features: FeatureConfig | None = None,
              probes_per_capability: int = 16, seed: int = 0, loaded_model=None, tokenizer=None,
              features_progress: FeatureProgress = True, probes_from: str = "heldout") -> dict:
    """Proxy scores of ``calib`` for ``target``: representativeness, diversity, proxy, per-capability coverage.

    ``probes_from``: the part of the sources the probes are drawn from (``PROBE_SPLITS``).

    ``features_progress``: ``extract_features``'s ``progress`` (a bar, nothing, or a callback).
    """
    if probes_from not in PROBE_SPLITS:
        raise ColakitError(f"probes from {probes_from!r}: not a split", f"use one of: {', '.join(PROBE_SPLITS)}")
    if not isinstance(calib, CalibrationSet):
        calib = CalibrationSet.load(calib)
    handle = ModelHandle(model or calib.manifest.get("model"), model=loaded_model, tokenizer=tokenizer)
    tokenizer = handle.tokenizer
    calib.check_tokenizer(tokenizer)
    cap_weights = target_weights(target, weights)
    probe_config = CurateConfig(model=handle.name, seq_len=int(calib.manifest.get("seq_len", 512)), seed=seed,
                                probes_per_capability=probes_per_capability)
    probes = build_probes(probe_config, tokenizer, [c for c, w in cap_weights.items() if w > 0], split=probes_from)
    samples = [Candidate(s.input_ids, s.text, s.source, s.doc_id) for s in calib.samples]
    feats, probe_feats = features_with_probes(samples, probes, handle, config=features or FeatureConfig(),
                                              progress=features_progress)
    scores = proxy_scores(feats, probe_feats, cap_weights)
    # the same coverage around the probes' mean: raw activation cosines are all near 1 (the sets of
    # results/pareto score 0.92-0.98 on the default model); centred, the common direction is gone
    mean = np.concatenate(list(probe_feats.values())).mean(axis=0, dtype=np.float64).astype(np.float32)
    centred = proxy_scores(feats - mean, {c: p - mean for c, p in probe_feats.items()}, cap_weights)
    return {"set": calib.content_hash, "target": target, "weights": cap_weights, **scores.as_dict(),
            "representativeness_centred": centred.representativeness, "coverage_centred": centred.per_capability,
            "probes": {"split": probes_from, "per_capability": {c: len(p) for c, p in probes.items()}}}
