"""rnn_pipeline (SparsifyWeights -> AttachSchedules -> LowerRNN): compiled models against the
numpy reference, a BSPC recurrent weight in the second layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tvm
from pass_modules import HOST
from torch import nn
from tvm import relax

from tvm_bsp.bspc import BSPCMatrix
from tvm_bsp.frontend import KaldiGRU, from_torch, reference_forward, to_relax
from tvm_bsp.passes import rnn_pipeline
from tvm_bsp.prune import bsp_mask


@pytest.mark.parametrize("cell", ["gru", "kaldi_gru", "lstm"])
def test_pipeline_numeric(cell):
    torch.manual_seed(4)
    rnn = {"gru": nn.GRU(5, 9, 2), "lstm": nn.LSTM(5, 9, 2), "kaldi_gru": KaldiGRU(5, 9, 2)}[cell]
    desc = from_torch(rnn)
    name = "weight_hh_l1"
    U = desc.layers[1].weight_hh
    mask = bsp_mask(U, 3, 3, 2.0, 1.0)
    desc.layers[1].weight_hh = U * mask
    m = BSPCMatrix.from_dense(U * mask, mask, 3, 3)
    mod = rnn_pipeline(HOST, {name: m}, knobs={"lanes": 4})(to_relax(desc))
    vm = relax.VirtualMachine(tvm.compile(mod, HOST), tvm.cpu())
    x = np.random.default_rng(0).standard_normal((4, 2, 5)).astype(np.float32)
    state = np.zeros(desc.state_shape(2), np.float32)
    y, s = vm["forward"](tvm.runtime.tensor(x), tvm.runtime.tensor(state))
    y_ref, s_ref = reference_forward(desc, x, state)
    np.testing.assert_allclose(y.numpy(), y_ref, atol=1e-5)
    np.testing.assert_allclose(s.numpy(), s_ref, atol=1e-5)
