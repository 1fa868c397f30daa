"""The pytorch-kaldi GRU that RTMobile trained, as a torch module.

Per layer (gates stacked ``r, z, n`` like ``torch.nn.GRU``, so pruning configs and the
importer treat both alike)::

    p   = BN(W x [+ b])                       # all frames at once; BN over the 3H features
    r_t = σ(p_r + U_r h)                      # no recurrent biases
    z_t = σ(p_z + U_z h)
    n_t = tanh(p_n + U_n (r_t * h)) * m       # reset gate *before* the recurrent product
    h   = z_t * h + (1 - z_t) * n_t

``m`` is pytorch-kaldi's dropout on the candidate: in training a Bernoulli(1 - p) mask drawn
once per sequence batch and layer (not rescaled); in evaluation the constant ``1 - p``. The
parameters are named like ``torch.nn.GRU``'s (``weight_ih_l0`` ``(3H, I)``, ``weight_hh_l0``
``(3H, H)``, ``bias_ih_l0``), the batch-norms are ``bn[k]`` (``BatchNorm1d(3H)``, which is
pytorch-kaldi's three per-gate batch-norms side by side).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class KaldiGRU(nn.Module):
    """pytorch-kaldi's GRU (see the module docstring).

    Parameters
    ----------
    input_size, hidden_size : int
        Features per input frame and hidden units per layer.
    num_layers : int
        Stacked layers.
    dropout : float
        Candidate dropout ``p`` (RTMobile: 0.2); evaluation scales the candidate by ``1 - p``.
    batchnorm : bool
        Batch-norm on the input projections (pytorch-kaldi's default).
    bias : bool, optional
        Bias on the input projections; default ``not batchnorm`` (a batch-norm makes it
        redundant).
    batch_first : bool
        Inputs/outputs ``(B, T, .)`` instead of ``(T, B, .)``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        dropout: float = 0.2,
        batchnorm: bool = True,
        bias: bool | None = None,
        batch_first: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.dropout = float(dropout)
        self.batchnorm = bool(batchnorm)
        self.bias = (not batchnorm) if bias is None else bool(bias)
        self.batch_first = bool(batch_first)
        H = self.hidden_size
        for k in range(num_layers):
            fan_in = input_size if k == 0 else H
            self.register_parameter(f"weight_ih_l{k}", nn.Parameter(torch.empty(3 * H, fan_in)))
            self.register_parameter(f"weight_hh_l{k}", nn.Parameter(torch.empty(3 * H, H)))
            if self.bias:
                self.register_parameter(f"bias_ih_l{k}", nn.Parameter(torch.empty(3 * H)))
        self.bn = nn.ModuleList(
            [nn.BatchNorm1d(3 * H, momentum=0.05) for _ in range(num_layers)] if batchnorm else []
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform ``±1/sqrt(H)`` weights (as ``torch.nn.GRU``), zero biases."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for name, p in self.named_parameters(recurse=False):
            if name.startswith("bias"):
                nn.init.zeros_(p)
            else:
                nn.init.uniform_(p, -bound, bound)

    def layer_weights(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(weight_ih, weight_hh, bias_ih or None)`` of layer ``k`` as the forward uses them."""
        bias = getattr(self, f"bias_ih_l{k}") if self.bias else None
        return getattr(self, f"weight_ih_l{k}"), getattr(self, f"weight_hh_l{k}"), bias

    def forward(
        self, x: torch.Tensor, h0: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the stack.

        Parameters
        ----------
        x : torch.Tensor
            ``(T, B, input_size)`` (``(B, T, input_size)`` if ``batch_first``).
        h0 : torch.Tensor, optional
            ``(num_layers, B, hidden_size)``; zeros if omitted.

        Returns
        -------
        y : torch.Tensor
            Last layer's outputs, ``(T, B, H)`` (or ``(B, T, H)``).
        h_n : torch.Tensor
            ``(num_layers, B, H)``, the final states.
        """
        if self.batch_first:
            x = x.transpose(0, 1)
        T, B, _ = x.shape
        H = self.hidden_size
        if h0 is None:
            h0 = x.new_zeros(self.num_layers, B, H)
        finals = []
        seq = x
        for k in range(self.num_layers):
            w_ih, w_hh, b_ih = self.layer_weights(k)
            proj = nn.functional.linear(seq, w_ih, b_ih)
            if self.batchnorm:
                proj = self.bn[k](proj.reshape(T * B, 3 * H)).reshape(T, B, 3 * H)
            if self.training and self.dropout > 0:
                mask = torch.bernoulli(x.new_full((B, H), 1.0 - self.dropout))
            else:
                mask = x.new_full((1, H), 1.0 - self.dropout)
            u_rz, u_n = w_hh[: 2 * H], w_hh[2 * H :]
            h = h0[k]
            outs = []
            for t in range(T):
                rz = torch.sigmoid(proj[t, :, : 2 * H] + h @ u_rz.T)
                r, z = rz[:, :H], rz[:, H:]
                n = torch.tanh(proj[t, :, 2 * H :] + (r * h) @ u_n.T) * mask
                h = z * h + (1.0 - z) * n
                outs.append(h)
            seq = torch.stack(outs)
            finals.append(h)
        y = seq.transpose(0, 1) if self.batch_first else seq
        return y, torch.stack(finals)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
            f"dropout={self.dropout}, batchnorm={self.batchnorm}, bias={self.bias}, "
            f"batch_first={self.batch_first}"
        )
