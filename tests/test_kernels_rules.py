"""Kernel rules (dlight style): each rule serves its targets and returns None for others."""

from __future__ import annotations

import json

import pytest
import tvm

from tvm_bsp.kernels import dense_template, resolve_target, spmm_template
from tvm_bsp.kernels.cpu.rnn import linear_kernel, sequence_kernel
from tvm_bsp.kernels.matmat import CPUMatmat, OpenCLMatmat
from tvm_bsp.kernels.opencl.knobs import GPU_KNOBS_ATTR, GPURNNKnobs
from tvm_bsp.kernels.opencl.rnn import gpu_linear_kernel, gpu_sequence_kernel
from tvm_bsp.kernels.rnn_knobs import RNNKnobs
from tvm_bsp.kernels.rules import (
    CPU_KNOBS_ATTR,
    RULES,
    CPURule,
    OpenCLRule,
    kernels_for,
)

HOST = resolve_target("host")
ARM64 = resolve_target("arm64")
MALI = resolve_target("opencl-mali")
ADRENO = resolve_target("opencl-adreno", host="host")
CUDA = tvm.target.Target({"kind": "cuda"})


def test_each_rule_answers_for_its_targets_only():
    cpu, opencl = CPURule(), OpenCLRule()
    for target in (HOST, ARM64):
        assert cpu.apply(target).family == "cpu" and opencl.apply(target) is None
    for target in (MALI, ADRENO):
        assert opencl.apply(target).family == "gpu" and cpu.apply(target) is None
    assert all(rule.apply(CUDA) is None for rule in RULES)


def test_kernels_for_gives_each_target_its_builders_and_knobs():
    cpu, gpu = kernels_for(ARM64), kernels_for(MALI)
    assert (cpu.linear_kernel, cpu.sequence_kernel) == (linear_kernel, sequence_kernel)
    assert (gpu.linear_kernel, gpu.sequence_kernel) == (gpu_linear_kernel, gpu_sequence_kernel)
    assert isinstance(cpu.default_knobs(ARM64), RNNKnobs)
    assert isinstance(gpu.default_knobs(MALI), GPURNNKnobs)
    assert cpu.projected_lstm and not gpu.projected_lstm
    assert kernels_for(None) is cpu  # a module no attach pass has seen lowers for the CPU
    with pytest.raises(NotImplementedError, match="'cuda'"):
        kernels_for(CUDA)


def test_attached_knobs_read_the_table_of_their_own_attribute():
    table = {"*": {"lanes": 4}, "w_hh": {"lanes": 16, "threads": 2}}
    gpu_table = {"*": {"panel_rows": 32}}
    mod = tvm.IRModule().with_attr(CPU_KNOBS_ATTR, json.dumps(table))
    mod = mod.with_attr(GPU_KNOBS_ATTR, json.dumps(gpu_table))
    cpu, gpu = kernels_for(HOST), kernels_for(MALI)
    assert cpu.attached_knobs(mod, "w_hh") == RNNKnobs(lanes=16, threads=2)
    assert cpu.attached_knobs(mod, "other") == RNNKnobs(lanes=4)
    assert gpu.attached_knobs(mod, "w_hh") == GPURNNKnobs(panel_rows=32)
    assert cpu.attached_knobs(tvm.IRModule(), "w_hh") == RNNKnobs()


def test_matmat_templates_are_the_family_classes_of_the_rules():
    assert isinstance(spmm_template(HOST), CPUMatmat)
    assert isinstance(dense_template(ARM64), CPUMatmat)
    assert isinstance(spmm_template(ADRENO), OpenCLMatmat)
    assert spmm_template(MALI).kernels is kernels_for(MALI)
    assert dense_template(HOST).arg_names == ("x", "w", "bias", "y")
    assert spmm_template(MALI).arg_names == dense_template(MALI).arg_names
    with pytest.raises(NotImplementedError, match="'cuda'"):
        spmm_template(CUDA)
