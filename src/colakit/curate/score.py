"""``colakit score``: rank calibration sets before compressing anything.

The COLA paper names representativeness and diversity in activation space as what decides
calibration quality. This measures both for any CalibrationSet (see ``colakit.curate.coverage``): the
set's samples and the capability probes go through the same feature extractor, and the
facility-location coverage of the target's probes, the spread of the set, and their mean come out.
"""

from __future__ import annotations

from pathlib import Path

from colakit.calibset import CalibrationSet
from colakit.curate.coverage import proxy_scores, target_weights
from colakit.curate.features import FeatureConfig, FeatureProgress
from colakit.curate.pipeline import CurateConfig, build_probes, features_with_probes
from colakit.curate.process import Candidate
from colakit.model.load import ModelHandle


def score_set(calib: CalibrationSet | str | Path, *, model: str | None = None, target: str = "general",
              weights: dict | None = None, features: FeatureConfig | None = None,
              probes_per_capability: int = 16, seed: int = 0, loaded_model=None, tokenizer=None,
              features_progress: FeatureProgress = True) -> dict:
    """Proxy scores of ``calib`` for ``target``: representativeness, diversity, proxy, per-capability coverage.

    ``features_progress``: ``extract_features``'s ``progress`` (a bar, nothing, or a callback).
    """
    if not isinstance(calib, CalibrationSet):
        calib = CalibrationSet.load(calib)
    handle = ModelHandle(model or calib.manifest.get("model"), model=loaded_model, tokenizer=tokenizer)
    tokenizer = handle.tokenizer
    calib.check_tokenizer(tokenizer)
    cap_weights = target_weights(target, weights)
    probe_config = CurateConfig(model=handle.name, seq_len=int(calib.manifest.get("seq_len", 512)), seed=seed,
                                probes_per_capability=probes_per_capability)
    probes = build_probes(probe_config, tokenizer, [c for c, w in cap_weights.items() if w > 0])
    samples = [Candidate(s.input_ids, s.text, s.source, s.doc_id) for s in calib.samples]
    feats, probe_feats = features_with_probes(samples, probes, handle, config=features or FeatureConfig(),
                                              progress=features_progress)
    scores = proxy_scores(feats, probe_feats, cap_weights)
    return {"set": calib.content_hash, "target": target, "weights": cap_weights, **scores.as_dict()}
