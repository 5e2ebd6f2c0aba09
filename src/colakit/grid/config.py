"""A grid config (YAML) -> validated curation and compression variants, settings and seeds.

Every error names the key, its line in the file and the valid choices, before anything runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from colakit.compress import CompressionConfig
from colakit.compress.config import config_keys
from colakit.compress.methods import ParameterError
from colakit.compress.packed import DEFAULT_SAVE_FORMAT, check_save_format
from colakit.curate.features import FeatureConfig
from colakit.curate.pipeline import CurateConfig, defaults_for
from colakit.curate.select import SELECTORS
from colakit.errors import ColakitError
from colakit.evaluate.suites import resolve_tasks

TOP_KEYS = ("name", "model", "seeds", "baseline", "defaults", "curation", "compression", "sweep", "sweeps",
            "evaluate", "score", "map", "device", "dtype", "keep_models")
# curation keys: CurateConfig's fields (minus the ones the grid sets) and a few short forms
CURATE_KEYS = ("method", "sources", "n", "seq_len", "format", "packing", "pool_per_source", "split_seed",
               "heldout_fraction", "allow_overlap", "params", "features", "target", "weights",
               "probes_per_capability", "for_compression")
FEATURE_KEYS = tuple(f.name for f in dataclasses.fields(FeatureConfig) if f.name not in ("device", "dtype"))
SWEEP_KEYS = ("n", "seq_len", "format", "packing", "pool_per_source")
SWEEP_SCOPE = "curations"  # a sweep block's optional list of the curation labels it applies to
EVAL_KEYS = ("tasks", "limit", "seed", "ppl_seq_len")
SCORE_KEYS = ("target", "probes", "feature_layers")


def _compression_keys() -> tuple[str, ...]:
    return (*config_keys(), "backend", "save_format")


def _lines(text: str) -> dict[tuple, int]:
    """Line (1-based) of every mapping key, by its path of keys: errors can point into the file."""
    out: dict[tuple, int] = {}

    def walk(node, path):
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                out[path + (k.value,)] = k.start_mark.line + 1
                walk(v, path + (k.value,))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                out[path + (i,)] = v.start_mark.line + 1
                walk(v, path + (i,))

    walk(yaml.compose(text), ())
    return out


@dataclass
class Variant:
    """A named curation or compression variant: its label and its parameters."""

    label: str
    params: dict


@dataclass
class Cell:
    """One grid point: a curation, a compression, settings (the sweep's values) and a seed."""

    curation: str
    compression: str
    settings: dict
    seed: int

    def _key(self, *names: str) -> str:
        parts = [*names] + [f"{k}{v}" for k, v in sorted(self.settings.items())]
        return "__".join(p.replace("/", "-").replace(" ", "") for p in parts) + f"__s{self.seed}"

    @property
    def id(self) -> str:
        return self._key(self.curation, self.compression)

    @property
    def calib_key(self) -> str:
        """Cells that differ only in the compression share a calibration set (unless it is method-aware)."""
        return self._key(self.curation)


@dataclass
class GridConfig:
    name: str
    model: str
    seeds: list[int]
    curation: dict[str, Variant]
    compression: dict[str, Variant]
    settings: list[dict] = field(default_factory=lambda: [{}])
    sweeps: dict[str, list] = field(default_factory=dict)
    # curation label -> the settings points that apply to it (absent: every point in ``settings``)
    scoped: dict[str, list[dict]] = field(default_factory=dict)
    evaluate: dict = field(default_factory=lambda: {"tasks": "quick", "seed": 0})
    score: dict | None = None
    baseline: str | None = None
    map: bool = True
    device: str = "auto"
    dtype: str = "auto"
    keep_models: bool = False
    raw: dict = field(default_factory=dict)

    def cells(self) -> list[Cell]:
        out: list[Cell] = []
        for cur in self.curation:
            for comp in self.compression:
                points: list[dict] = []
                for point in self.scoped.get(cur, self.settings):
                    point = self.effective_settings(cur, comp, point)
                    if point not in points:
                        points.append(point)
                out += [Cell(cur, comp, point, seed) for point in points for seed in self.seeds]
        return out

    def base_curation(self, curation: str, compression: str) -> dict:
        """A curation's parameters before any sweep, with n, seq_len, format and packing resolved."""
        params = dict(self.curation[curation].params)
        method_aware = params.pop("for_compression", False)
        defaults = defaults_for(self.compression[compression].params["method"]) if method_aware else {}
        for key in ("n", "seq_len", "format", "packing"):
            params.setdefault(key, defaults.get(key, CurateConfig.__dataclass_fields__[key].default))
        return params

    def effective_settings(self, curation: str, compression: str, point: dict) -> dict:
        """``point`` without the values the curation has anyway: a sweep's default point is the plain
        cell (one run, one name), not a copy per sweep."""
        base = self.base_curation(curation, compression)
        return {k: v for k, v in point.items() if base.get(k) != v}

    def cell(self, curation: str, compression: str, settings: dict, seed: int) -> Cell:
        return Cell(curation, compression, self.effective_settings(curation, compression, settings), seed)

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.raw, sort_keys=True, default=str).encode()).hexdigest()[:16]


class _Checker:
    def __init__(self, path: str, lines: dict):
        self.path, self.lines = path, lines

    def where(self, keypath: tuple) -> str:
        line = self.lines.get(keypath)
        while line is None and keypath:
            keypath = keypath[:-1]
            line = self.lines.get(keypath)
        return f"{self.path}, line {line}" if line else self.path

    def fail(self, keypath: tuple, problem: str, hint: str):
        raise ColakitError(f"{self.where(keypath)}: {problem}", hint)

    def keys(self, mapping, valid: tuple, keypath: tuple, what: str) -> dict:
        if not isinstance(mapping, dict):
            self.fail(keypath, f"{what} must be a mapping, got {type(mapping).__name__}", f"write {what} as KEY: VALUE lines")
        for key in mapping:
            if key not in valid:
                self.fail(keypath + (key,), f"unknown key {key!r} in {what}", f"valid keys: {', '.join(valid)}")
        return mapping


def load_grid(path: str | Path) -> GridConfig:
    path = Path(path)
    if not path.is_file():
        raise ColakitError(f"grid config {path} not found", "give a YAML file, e.g. configs/general.yaml")
    text = path.read_text()
    try:
        raw = yaml.safe_load(text) or {}
        lines = _lines(text)
    except yaml.YAMLError as err:
        raise ColakitError(f"{path} is not valid YAML: {err}", "fix the syntax at the line shown") from None
    return parse_grid(raw, _Checker(str(path), lines))


def parse_grid(raw: dict, check: _Checker | None = None) -> GridConfig:
    check = check or _Checker("grid config", {})
    check.keys(raw, TOP_KEYS, (), "the grid config")
    for key in ("curation", "compression"):
        if not raw.get(key):
            check.fail((key,), f"no {key} variants", f"add a '{key}:' mapping of LABEL: {{method: ...}}")
    defaults = check.keys(raw.get("defaults") or {}, CURATE_KEYS, ("defaults",), "defaults")
    curation = {}
    for label, params in check.keys(raw["curation"], tuple(raw["curation"]), ("curation",), "curation").items():
        params = {**defaults, **check.keys(params or {}, CURATE_KEYS, ("curation", label), f"curation {label!r}")}
        method = params.get("method")
        if method not in SELECTORS:
            check.fail(("curation", label, "method"), f"unknown curation method {method!r} in {label!r}",
                       f"valid methods: {', '.join(sorted(SELECTORS))}")
        check.keys(params.get("features") or {}, FEATURE_KEYS, ("curation", label, "features"), "features")
        if isinstance(params.get("sources"), str):
            params["sources"] = [s.strip() for s in params["sources"].split(",") if s.strip()]
        curation[str(label)] = Variant(str(label), params)
    compression = {}
    valid = _compression_keys()
    for label, params in raw["compression"].items():
        params = dict(check.keys(params or {}, valid, ("compression", label), f"compression {label!r}"))
        backend = params.pop("backend", "builtin")
        # kept only when given: the compress stage's digest of an older grid stays what it was
        output = {"save_format": params.pop("save_format")} if "save_format" in params else {}
        try:
            check_save_format(output.get("save_format", DEFAULT_SAVE_FORMAT), backend)
        except ColakitError as err:
            check.fail(("compression", label, "save_format"), f"compression {label!r}: {err.problem}", err.hint)
        try:
            CompressionConfig(**params).validate()
        except ParameterError as err:  # a key this method does not take: point at its line
            check.fail(("compression", label, err.key), f"compression {label!r}: {err.problem}", err.hint)
        except ColakitError as err:
            check.fail(("compression", label), f"compression {label!r}: {err.problem}", err.hint)
        except TypeError as err:
            check.fail(("compression", label), f"compression {label!r}: {err}", f"valid keys: {', '.join(valid)}")
        compression[str(label)] = Variant(str(label), {**params, "backend": backend, **output})
    settings, sweeps, scoped = _settings(raw, check, tuple(curation))
    seeds = raw.get("seeds", [0])
    seeds = [seeds] if isinstance(seeds, int) else seeds
    if not seeds or not all(isinstance(s, int) for s in seeds):
        check.fail(("seeds",), f"seeds must be a list of integers, got {seeds!r}", "e.g. seeds: [0, 1, 2]")
    baseline = raw.get("baseline")
    if baseline is not None and baseline not in curation:
        check.fail(("baseline",), f"baseline {baseline!r} is not a curation label", f"use one of: {', '.join(curation)}")
    evaluate = {"tasks": "quick", "seed": 0, **check.keys(raw.get("evaluate") or {}, EVAL_KEYS, ("evaluate",), "evaluate")}

    try:
        resolve_tasks(evaluate["tasks"], evaluate.get("limit"))
    except ColakitError as err:
        check.fail(("evaluate", "tasks"), err.problem, err.hint)
    score = raw.get("score")
    if score is not None:
        score = {"target": "general", "probes": 8, "feature_layers": "every:2",
                 **check.keys(score or {}, SCORE_KEYS, ("score",), "score")}
    return GridConfig(name=str(raw.get("name", "grid")), model=str(raw.get("model", "smollm2-135m")), seeds=seeds,
                      curation=curation, compression=compression, settings=settings, sweeps=sweeps, scoped=scoped,
                      evaluate=evaluate, score=score, baseline=baseline, map=bool(raw.get("map", True)),
                      device=str(raw.get("device", "auto")), dtype=str(raw.get("dtype", "auto")),
                      keep_models=bool(raw.get("keep_models", False)), raw=raw)


def _settings(raw: dict, check: _Checker, labels: tuple[str, ...]) -> tuple[list[dict], dict[str, list], dict]:
    """``sweep: {k: [..]}`` is one cartesian product; ``sweeps: [{..}, {..}]`` is a union of them.

    A block with ``curations: [label, ..]`` applies to those curations only; a curation that no block
    applies to runs at its own settings. Returns (every point, the swept values, label -> its points
    for the labels that differ from every point).
    """
    if "sweep" in raw and "sweeps" in raw:
        check.fail(("sweeps",), "both 'sweep' and 'sweeps' given", "use sweep: for one product, sweeps: for a list")
    blocks = raw.get("sweeps") if "sweeps" in raw else ([raw["sweep"]] if raw.get("sweep") else [])
    if not isinstance(blocks, list):
        check.fail(("sweeps",), "sweeps must be a list of mappings", "e.g. sweeps: [{seq_len: [128, 256]}, {n: [16, 32]}]")
    settings: list[dict] = []
    values: dict[str, list] = {}
    per_label: dict[str, list[dict]] = {label: [] for label in labels}
    for i, block in enumerate(blocks):
        keypath = ("sweeps", i) if "sweeps" in raw else ("sweep",)
        check.keys(block, SWEEP_KEYS + (SWEEP_SCOPE,), keypath, "a sweep")
        block = dict(block)
        scope = block.pop(SWEEP_SCOPE, None)
        if scope is not None:
            if isinstance(scope, str):
                scope = [scope]
            unknown = [c for c in scope or [None] if c not in labels]
            if unknown:
                check.fail(keypath + (SWEEP_SCOPE,), f"{SWEEP_SCOPE} names {unknown[0]!r}, not a curation label",
                           f"use a list of: {', '.join(labels)}")
        for key, vals in block.items():
            if not isinstance(vals, list) or not vals:
                check.fail(keypath + (key,), f"sweep values of {key!r} must be a non-empty list", f"e.g. {key}: [a, b]")
            values.setdefault(key, [])
            values[key] += [v for v in vals if v not in values[key]]
        for combo in itertools.product(*block.values()):
            point = dict(zip(block.keys(), combo))
            if point not in settings:
                settings.append(point)
            for label in scope or labels:
                if point not in per_label[label]:
                    per_label[label].append(point)
    settings = settings or [{}]
    scoped = {label: points or [{}] for label, points in per_label.items() if (points or [{}]) != settings}
    return settings, values, scoped
