"""Methods as classes: the registry, per-method keys, the report's config, and a method added from outside."""

from dataclasses import dataclass

import pytest
import torch

from colakit.compress import METHODS, CompressionConfig, compress, get_method, register_method
from colakit.compress.config import REPORT_SCHEMA, config_keys
from colakit.compress.methods import Method, ParameterError, Pruning
from colakit.compress.methods.wanda import prune_mask_rows
from colakit.errors import ColakitError
from colakit.grid import load_grid
from colakit.model.layers import find_decoder, weight_matrix
from tiny_models import tiny_model

BUILTIN = {"sparsegpt", "wanda", "magnitude", "gptq", "awq", "rtn"}


def calibration(n=4, length=24):
    ids = torch.randint(0, 256, (n, length), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 10:] = 0
    return ids, mask


def test_registry_holds_the_builtins_by_name():
    assert set(METHODS) >= BUILTIN
    assert all(get_method(name).name == name for name in BUILTIN)
    assert {n for n in BUILTIN if get_method(n).prunes} == {"sparsegpt", "wanda", "magnitude"}
    assert {n for n in BUILTIN if not get_method(n).needs_data} == {"magnitude", "rtn"}
    with pytest.raises(ColakitError, match="unknown compression method 'obc'") as err:
        get_method("obc")
    assert all(name in err.value.hint for name in BUILTIN)


@pytest.mark.parametrize("method,key,problem", [
    ("gptq", "sparsity", "sparsity applies to pruning, not gptq"),
    ("rtn", "pattern", "pattern applies to pruning, not rtn"),
    ("rtn", "awq_clip", "awq_clip applies to awq, not rtn"),
    ("wanda", "damp", "damp applies to gptq, sparsegpt, not wanda"),
    ("awq", "bitz", "unknown key 'bitz' for awq"),
])
def test_a_key_the_method_does_not_take_is_refused_naming_its_keys(method, key, problem):
    with pytest.raises(ParameterError) as err:
        CompressionConfig(method, **{key: 1})
    assert err.value.problem == problem and err.value.key == key
    assert err.value.hint == f"{method} takes: {', '.join(get_method(method).parameters() + ('batch_size',))}"


def test_quantization_only_methods_default_to_4_bits_and_pruning_ones_to_none():
    assert [CompressionConfig(m).method.bits for m in ("gptq", "awq", "rtn")] == [4, 4, 4]
    assert CompressionConfig("gptq", bits=None).method.bits == 4
    assert [CompressionConfig(m).method.bits for m in ("sparsegpt", "wanda", "magnitude")] == [None] * 3


@pytest.mark.parametrize("method", sorted(BUILTIN))
def test_report_config_has_the_same_keys_for_every_builtin(method):
    config = CompressionConfig(method, group_size=32, batch_size=3)
    saved = config.to_dict()
    assert list(saved) == list(REPORT_SCHEMA)  # the one shape compression.json has always had
    assert saved["method"] == method and saved["group_size"] == 32 and saved["batch_size"] == 3
    assert all(saved[k] == v for k, v in config.method.to_dict().items())


def test_config_keys_are_every_key_of_some_method():
    keys = config_keys()
    assert set(keys) == {"method", "batch_size", *(k for cls in METHODS.values() for k in cls.parameters())}
    assert "keep_backup" not in keys


def test_llmcompressor_recipes_are_data_and_refused_where_missing():
    (sgpt, rounding) = CompressionConfig("sparsegpt", pattern="2:4", bits=4, group_size=32).method.llmcompressor_recipe()
    assert (sgpt.name, sgpt.kwargs["mask_structure"], sgpt.kwargs["sparsity"]) == ("SparseGPTModifier", "2:4", 0.5)
    assert rounding.name == "QuantizationModifier"
    assert rounding.kwargs["config_groups"]["group_0"]["weights"]["group_size"] == 32
    (wanda,) = CompressionConfig("wanda", pattern="4:8").method.llmcompressor_recipe()
    assert wanda.kwargs["mask_structure"] == "4:8"  # llm-compressor counts the pruned weights: 4 of 8 either way
    (gptq,) = CompressionConfig("gptq", act_order=True, group_size=-1).method.llmcompressor_recipe()
    assert gptq.kwargs["actorder"] == "weight"
    assert gptq.kwargs["config_groups"]["group_0"]["weights"]["strategy"] == "channel"
    assert CompressionConfig("magnitude").method.llmcompressor_recipe() is None
    from colakit.compress.llmcompressor_backend import check_supported

    with pytest.raises(ColakitError, match="rtn has no llm-compressor recipe"):
        check_supported(CompressionConfig("rtn"))


class InputL1:
    """Mean absolute input per feature (a statistic no built-in gathers)."""

    def __init__(self, columns, device):
        self.total = torch.zeros(columns, device=device)
        self.count = 0

    def add_batch(self, x):
        self.total += x.abs().float().sum(0)
        self.count += x.shape[0]


@dataclass
class L1Prune(Pruning):
    """Prune each row's smallest ``|w| * mean|x|^power`` (a test method, registered from outside)."""

    name = "test-l1"
    power: float = 1.0

    def validate(self):
        super().validate()
        if not self.power > 0:
            raise ColakitError(f"power {self.power} must be > 0", "use e.g. power: 1")

    def make_stats(self, columns, device):
        return InputL1(columns, device)

    def solve(self, stats, w, what):
        scores = w.abs() * (stats.total / stats.count).pow(self.power)
        return w.masked_fill(prune_mask_rows(scores, self.sparsity, self.nm), 0), {"tokens": stats.count}


@pytest.fixture
def l1_method():
    register_method(L1Prune)
    try:
        yield L1Prune
    finally:
        METHODS.pop(L1Prune.name)


def test_a_method_registered_from_outside_runs_through_the_engine(l1_method):
    model = tiny_model("qwen2")
    ids, mask = calibration()
    report = compress(model, ids, mask, CompressionConfig("test-l1", pattern="2:4", power=2.0, batch_size=2))
    layout = find_decoder(model)
    for i in range(layout.num_layers):
        for lin in layout.linears(i).values():
            w = weight_matrix(lin)
            assert ((w != 0).reshape(w.shape[0], -1, 4).sum(-1) <= 2).all()
    assert all(rec["tokens"] == int(mask.sum()) for rec in report.linears.values())  # padding left out
    assert all(b["rel_error"] is not None for b in report.blocks)
    assert report.method == "test-l1"
    assert list(report.config) == [*REPORT_SCHEMA, "power"] and report.config["power"] == 2.0
    with pytest.raises(ColakitError, match="power 0 must be > 0"):
        compress(model, ids, mask, CompressionConfig("test-l1", power=0))
    with pytest.raises(ColakitError, match="bits applies to"):
        CompressionConfig("test-l1", bits=4)
    with pytest.raises(ColakitError, match="needs calibration data"):
        compress(model, None, None, CompressionConfig("test-l1"))


def test_a_solve_that_changes_its_input_in_place_is_refused_naming_the_method(l1_method, monkeypatch):
    """The engine hands solve the parameter itself (no copy), so a solve must leave it as it was."""
    def in_place(self, stats, w, what):
        return w.mul_(0.5), {}

    monkeypatch.setattr(L1Prune, "solve", in_place)
    ids, mask = calibration()
    with pytest.raises(ColakitError, match="test-l1's solve changed the weight of block 0 .* in place"):
        compress(tiny_model("qwen2"), ids, mask, CompressionConfig("test-l1"))


def test_a_registered_method_is_a_grid_method_with_its_own_keys(l1_method, tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text("curation:\n  c4: {method: random, sources: [c4]}\n"
                    "compression:\n  l1: {method: test-l1, power: 0.5}\n"
                    "  g:\n    method: gptq\n    power: 2\n"
                    "evaluate: {tasks: ppl_wiki:2}\n")
    with pytest.raises(ColakitError, match=r"line 7: compression 'g': power applies to test-l1, not gptq"):
        load_grid(path)
    path.write_text(path.read_text().replace("    method: gptq\n    power: 2\n", "    method: gptq\n"))
    assert load_grid(path).compression["l1"].params == {"method": "test-l1", "power": 0.5, "backend": "builtin"}


def test_registering_refuses_a_name_taken_and_a_class_that_is_no_method(l1_method):
    @dataclass
    class Other(Pruning):
        name = "test-l1"

    with pytest.raises(ColakitError, match="registered twice"):
        register_method(Other)
    register_method(L1Prune)  # the same class again: nothing changes
    assert METHODS["test-l1"] is L1Prune

    class NotADataclass(Method):
        name = "plain"

    with pytest.raises(ColakitError, match="not a dataclass"):
        register_method(NotADataclass)
