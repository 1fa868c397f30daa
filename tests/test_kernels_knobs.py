"""Knobs, configs and target resolution (``tvm_bsp.kernels``), and the templates' defaults."""

import pytest
import tvm

from tvm_bsp.kernels import (
    Knob,
    all_configs,
    dense_template,
    family,
    resolve_config,
    resolve_target,
    spmm_template,
)


def test_knob_default_must_be_a_choice():
    with pytest.raises(ValueError, match="default"):
        Knob("a", (1, 2), 3)


def test_resolve_config_fills_defaults_and_validates():
    knobs = [Knob("a", (1, 2), 1), Knob("b", ("x", "y"), "y")]
    assert resolve_config(knobs, None) == {"a": 1, "b": "y"}
    assert resolve_config(knobs, {"a": 2}) == {"a": 2, "b": "y"}
    with pytest.raises(ValueError, match="unknown knobs"):
        resolve_config(knobs, {"c": 1})
    with pytest.raises(ValueError, match="not one of"):
        resolve_config(knobs, {"b": "z"})
    assert len(list(all_configs(knobs))) == 4


@pytest.mark.parametrize("target", ["host", "arm64", "opencl-mali", "opencl-adreno"])
@pytest.mark.parametrize("batch", [1, 3, 32])
def test_every_template_has_valid_defaults(target, batch):
    tgt = resolve_target(target)
    for template in (spmm_template(tgt), dense_template(tgt)):
        knobs = template.knobs(batch)
        assert knobs and all(k.doc for k in knobs)
        config = template.config(batch)
        assert set(config) == {k.name for k in knobs}
        assert template.config(batch, config) == config  # a full config is its own completion


def test_target_names():
    host = resolve_target("host")
    assert host.kind.name == "llvm" and "mcpu" in host.attrs
    arm = resolve_target("arm64")
    assert str(arm.attrs["mtriple"]).startswith("aarch64")
    mali = resolve_target("opencl-mali")
    assert mali.kind.name == "opencl" and mali.attrs["device"] == "mali"
    assert str(mali.host.attrs["mtriple"]).startswith("aarch64")
    adreno = resolve_target("opencl-adreno", host="host")
    assert adreno.attrs["device"] == "adreno" and adreno.host.kind.name == "llvm"
    assert family(host) == "cpu" and family(mali) == "gpu"
    custom = resolve_target({"kind": "llvm", "mcpu": "cortex-a76", "mtriple": "aarch64-linux-gnu"})
    assert family(custom) == "cpu"
    with pytest.raises(ValueError, match="unknown target name"):
        resolve_target("opencl-powervr")
    with pytest.raises(ValueError, match="no schedule template"):
        family(tvm.target.Target({"kind": "cuda"}))
