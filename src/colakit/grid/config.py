"""A grid config (YAML) -> validated curation and compression variants, settings and seeds.

Every error names the key, its line in the file and the valid choices, before anything runs. Every
value's type is checked here too (against the fields of ``CurateConfig``, ``FeatureConfig``, the
methods' and selectors' parameters), so ``colakit run --dry-run`` refuses what the run would.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import itertools
import json
import types
from collections import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

from colakit.compress import CompressionConfig
from colakit.compress.config import config_keys
from colakit.compress.methods import METHODS, ParameterError
from colakit.compress.packed import DEFAULT_SAVE_FORMAT, check_save_format
from colakit.curate.features import FeatureConfig
from colakit.curate.pipeline import CurateConfig, defaults_for
from colakit.curate.score import PROBE_SPLITS
from colakit.curate.select import SELECTORS
from colakit.data.spec import split_specs
from colakit.defaults import DEFAULT_MODEL, DEFAULT_TASKS
from colakit.errors import ColakitError
from colakit.evaluate.suites import resolve_tasks

TOP_KEYS = ("name", "model", "seeds", "baseline", "head_to_head", "defaults", "curation", "compression", "sweep",
            "sweeps", "evaluate", "score", "map", "device", "dtype", "keep_models")
# curation keys: CurateConfig's fields (minus the ones the grid sets) and a few short forms
CURATE_KEYS = ("method", "sources", "n", "seq_len", "format", "packing", "pool_per_source", "split_seed",
               "heldout_fraction", "allow_overlap", "params", "features", "target", "weights",
               "probes_per_capability", "for_compression")
FEATURE_KEYS = tuple(f.name for f in dataclasses.fields(FeatureConfig) if f.name not in ("device", "dtype"))
SWEEP_KEYS = ("n", "seq_len", "format", "packing", "pool_per_source")
SWEEP_SCOPE = "curations"  # a sweep block's optional list of the curation labels it applies to
EVAL_KEYS = ("tasks", "limit", "seed", "ppl_seq_len")
SCORE_KEYS = ("target", "probes", "feature_layers", "probes_from")

# the type of every value, by key (a block checked by its key alone, e.g. curation, is absent)
TOP_TYPES = {"name": str, "model": str, "seeds": int | list[int], "baseline": str | None, "device": str,
             "dtype": str, "map": bool, "keep_models": bool}
CURATE_TYPES = {**{k: t for k, t in get_type_hints(CurateConfig).items() if k in CURATE_KEYS},
                "sources": str | list[str], "params": dict, "features": dict, "for_compression": bool}
FEATURE_TYPES = {k: t for k, t in get_type_hints(FeatureConfig).items() if k in FEATURE_KEYS}
EVAL_TYPES = {"tasks": str | list[str], "limit": int | None, "seed": int, "ppl_seq_len": int}
SCORE_TYPES = {"target": str, "probes": int, "feature_layers": str, "probes_from": str}
CURATE_EXAMPLES = {f.name: f.default for f in dataclasses.fields(CurateConfig)
                   if f.default is not dataclasses.MISSING}


def _compression_keys() -> tuple[str, ...]:
    return (*config_keys(), "backend", "save_format")


def _compression_types(method: str) -> dict:
    cls = METHODS.get(method)
    own = {k: t for k, t in get_type_hints(cls).items() if k in cls.parameters()} if cls else {}
    return {"method": str, "batch_size": int, "backend": str, "save_format": str, **own}


def _selector_types(method: str) -> tuple[tuple[str, ...] | None, dict]:
    """A curation method's parameter names (None: it takes any) and their types, from its ``__init__``."""
    cls = SELECTORS[method]
    params = inspect.signature(cls).parameters.values()
    names = None if any(p.kind is p.VAR_KEYWORD for p in params) else tuple(p.name for p in params)
    return names, get_type_hints(cls.__init__) if cls.__init__ is not object.__init__ else {}


def _matches(value, hint) -> bool:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin in (list, abc.Sequence):
        return isinstance(value, list) and all(_matches(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(_matches(k, args[0]) and _matches(v, args[1]) for k, v in value.items())
    if hint in (int, float):  # YAML's true/false are not numbers here; an integer is a fine float
        return isinstance(value, int if hint is int else (int, float)) and not isinstance(value, bool)
    if isinstance(hint, type) and hint is not Any:
        return isinstance(value, hint)
    return True  # a type this check does not know: the code that takes the value decides


def _expected(hint) -> str:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_expected(a) for a in args)
    if origin in (list, abc.Sequence):
        return f"a list of {_expected(args[0]).split(' ', 1)[1]}s"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string", dict: "a mapping",
            type(None): "null"}.get(origin or hint, str(hint))


def _kind(value) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a mapping", type(None): "null"}.get(type(value), type(value).__name__)


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
    evaluate: dict = field(default_factory=lambda: {"tasks": DEFAULT_TASKS, "seed": 0})
    score: dict | None = None
    baseline: str | None = None
    # curation label -> the labels it is tested against on mean retention (``grid.table.head_to_head``)
    head_to_head: dict[str, list[str]] = field(default_factory=dict)
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

    def value(self, keypath: tuple, name: str, value, hint, example=None) -> None:
        """Refuse a value of the wrong type here, not as a TypeError inside a cell (or when writing results)."""
        if _matches(value, hint):
            return
        key = keypath[-1] if isinstance(keypath[-1], str) else keypath[-2]
        hint_text = f"e.g. {key}: {json.dumps(example)}" if example is not None else f"give {key} {_expected(hint)}"
        if isinstance(value, str) and float in (get_args(hint) or (hint,)):
            try:
                float(value)
                hint_text += " (YAML reads 1e-2 as text: write 1.0e-2)"
            except ValueError:
                pass
        self.fail(keypath, f"{name} must be {_expected(hint)}, got {value!r} ({_kind(value)})", hint_text)

    def types(self, mapping: dict, hints: dict, keypath: tuple, what: str, examples: dict | None = None) -> None:
        for key, value in mapping.items():
            if key in hints:
                self.value(keypath + (key,), f"{what}: {key}" if what else key, value, hints[key],
                           (examples or {}).get(key))

    def keys(self, mapping, valid: tuple, keypath: tuple, what: str) -> dict:
        if not isinstance(mapping, dict):
            self.fail(keypath, f"{what} must be a mapping, got {type(mapping).__name__}", f"write {what} as KEY: VALUE lines")
        for key in mapping:
            if key not in valid:
                self.fail(keypath + (key,), f"unknown key {key!r} in {what}",
                          f"valid keys: {', '.join(valid) or 'none'}")
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
    check.types(raw, TOP_TYPES, (), "")
    for key in ("curation", "compression"):
        if not raw.get(key):
            check.fail((key,), f"no {key} variants", f"add a '{key}:' mapping of LABEL: {{method: ...}}")
    defaults = check.keys(raw.get("defaults") or {}, CURATE_KEYS, ("defaults",), "defaults")
    check.types(defaults, CURATE_TYPES, ("defaults",), "defaults", CURATE_EXAMPLES)
    curation = {}
    for label, own in check.keys(raw["curation"], tuple(raw["curation"]), ("curation",), "curation").items():
        own = check.keys(own or {}, CURATE_KEYS, ("curation", label), f"curation {label!r}")
        check.types(own, CURATE_TYPES, ("curation", label), f"curation {label!r}", CURATE_EXAMPLES)
        params = {**defaults, **own}
        where = lambda key: ("curation", label, key) if key in own else ("defaults", key)  # noqa: E731
        method = params.get("method")
        if method not in SELECTORS:
            check.fail(("curation", label, "method"), f"unknown curation method {method!r} in {label!r}",
                       f"valid methods: {', '.join(sorted(SELECTORS))}")
        features = check.keys(params.get("features") or {}, FEATURE_KEYS, where("features"), "features")
        check.types(features, FEATURE_TYPES, where("features"), "features")
        names, hints = _selector_types(method)
        takes = tuple(params.get("params") or {}) if names is None else names
        selector_params = check.keys(params.get("params") or {}, takes, where("params"), f"{method} parameters")
        check.types(selector_params, hints, where("params"), f"{method} parameters")
        if isinstance(params.get("sources"), str):
            params["sources"] = split_specs(params["sources"])  # as --sources reads it: quotes keep commas
        curation[str(label)] = Variant(str(label), params)
    compression = {}
    valid = _compression_keys()
    for label, params in raw["compression"].items():
        params = dict(check.keys(params or {}, valid, ("compression", label), f"compression {label!r}"))
        check.types(params, _compression_types(params.get("method")), ("compression", label), f"compression {label!r}")
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
    head_to_head = _head_to_head(raw.get("head_to_head"), check, tuple(curation))
    evaluate = check.keys(raw.get("evaluate") or {}, EVAL_KEYS, ("evaluate",), "evaluate")
    check.types(evaluate, EVAL_TYPES, ("evaluate",), "evaluate")
    evaluate = {"tasks": DEFAULT_TASKS, "seed": 0, **evaluate}

    try:
        resolve_tasks(evaluate["tasks"], evaluate.get("limit"))
    except ColakitError as err:
        check.fail(("evaluate", "tasks"), err.problem, err.hint)
    score = raw.get("score")
    if score is not None:
        score = check.keys(score or {}, SCORE_KEYS, ("score",), "score")
        check.types(score, SCORE_TYPES, ("score",), "score")
        score = {"target": "general", "probes": 8, "feature_layers": "every:2", "probes_from": "heldout", **score}
        if score["probes_from"] not in PROBE_SPLITS:
            check.fail(("score", "probes_from"), f"probes_from {score['probes_from']!r} is not a split",
                       f"use one of: {', '.join(PROBE_SPLITS)}")
    return GridConfig(name=str(raw.get("name", "grid")), model=str(raw.get("model", DEFAULT_MODEL)), seeds=seeds,
                      curation=curation, compression=compression, settings=settings, sweeps=sweeps, scoped=scoped,
                      evaluate=evaluate, score=score, baseline=baseline, head_to_head=head_to_head,
                      map=bool(raw.get("map", True)),
                      device=str(raw.get("device", "auto")), dtype=str(raw.get("dtype", "auto")),
                      keep_models=bool(raw.get("keep_models", False)), raw=raw)


def _head_to_head(raw, check: _Checker, labels: tuple[str, ...]) -> dict[str, list[str]]:
    """``head_to_head: {balanced: [mix-uniform, igsp, cola]}``: each key and each value a curation label."""
    if raw is None:
        return {}
    example = f"e.g. head_to_head: {{{labels[0]}: [{', '.join(labels[1:3])}]}}"
    if not isinstance(raw, dict):
        check.fail(("head_to_head",), f"head_to_head must map a curation label to a list of labels, got {raw!r}",
                   example)
    out = {}
    for label, rivals in raw.items():
        rivals = [rivals] if isinstance(rivals, str) else rivals
        if not isinstance(rivals, list) or not rivals or not all(isinstance(r, str) for r in rivals):
            check.fail(("head_to_head", label), f"head_to_head {label!r}: give a list of curation labels", example)
        for name in (label, *rivals):
            if name not in labels:
                check.fail(("head_to_head", label), f"head_to_head names {name!r}, which is not a curation label",
                           f"use some of: {', '.join(labels)}")
        if label in rivals:
            check.fail(("head_to_head", label), f"head_to_head tests {label!r} against itself", "drop it from its list")
        out[str(label)] = list(dict.fromkeys(rivals))
    return out


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
            for j, v in enumerate(vals):
                check.value(keypath + (key, j), f"sweep value of {key}", v, CURATE_TYPES[key])
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
