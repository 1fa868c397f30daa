"""OpenCL (mobile GPU) kernels of the recurrent layers: mat-mat input projection and sequences.

Same contract as the CPU kernels (:mod:`tvm_bsp.ops.rnn_seq_dense`,
:mod:`tvm_bsp.ops.rnn_linear`): one PrimFunc per layer runs a whole sequence of symbolic
length ``T`` and batch ``B``; the input projection ``xp`` of all frames comes from one mat-mat
call before it. Inside the sequence PrimFunc a *serial host loop* over ``t`` launches one or
two device kernels per step (TVM's ``SplitHostDevice`` turns every thread-bound nest into a
kernel launch inside the host loop); the in-order command queue is the global barrier between
steps. The state lives in global scratch buffers, double-buffered (``hb[t % 2]`` read,
``hb[(t + 1) % 2]`` written), like the CPU kernels.

Kernels (knobs of :mod:`tvm_bsp.schedules.gpu_rnn`)

dense step (one launch per step; two for the kaldi GRU)
    One work-group of ``work_group`` threads per (hidden unit ``j``, sequence ``b``): each
    thread sums ``vector`` consecutive columns per round over the ``G`` gate rows of ``j``;
    the partial sums meet in local memory (tree reduction, TVM inserts the barriers) and
    thread 0 applies the gate math.
BSPC step (two launches per step; four for the kaldi GRU)
    The recurrent product in the panel layout (:mod:`tvm_bsp.ops.layout`): one work-group per
    (panel, sequence), a thread per lane (row); the work-group stages ``chunk`` entries
    ``h[cols[e]]`` in local memory, once for all lanes of the panel (BSPC's redundant-load
    elimination), then each lane accumulates its row. The pre-activations go to a global
    scratch ``A``; a second kernel (a work-item per unit and sequence) applies the gate math.
mat-mat (input projection, dense head)
    The same panel kernel over a tile of ``frames`` frames per work-group. Dense weights use
    the panel layout too (all columns of a panel kept).

Signatures (``GH = G * H``; all float32 except the int32 panel arrays; outputs last)::

    linear:            x (N,K), panel_ptr, panel_rows, cols, vals, bias (lanes) -> y (N,M)
    dense sequence:    xp (T,B,GH), state, u (GH*H,), bhn (H,)                -> y, hT[, cT]
    bspc sequence:     xp, state, panel_ptr, panel_rows, cols, vals, bhn (H,) -> y, hT[, cT]

``u`` is the row-major recurrent weight; ``bhn`` is ``b_hn`` of ``torch.nn.GRU`` (zeros for
the other cells). For the kaldi GRU the BSPC arrays hold two layouts back to back: the panels
of the ``r, z`` rows (``rz_panels`` of them), then those of the candidate rows.
"""

from __future__ import annotations

import functools

import tvm
from tvm import tirx
from tvm.script import tirx as T

from tvm_bsp.ops.rnn_gates import activations
from tvm_bsp.ops.rnn_linear import epilogue

#: Threads of the elementwise kernels (state copies, gate math of the BSPC path).
ELEMENTWISE_THREADS = 64


def _f32(v: float) -> tirx.FloatImm:
    return tirx.const(v, "float32")


def _finish(cell: str, phase: int, hidden: int, scale: float, exact: bool):
    """Gate math of one unit ``j`` of sequence ``b`` at step ``t``.

    The pre-activation of gate ``g`` is ``Apre[base + g * stride]``. The macro's signature is
    the same for every cell: ``(XP, Apre, base, stride, hb, cb, rh, az, BHN, Y, S, t, b, j)``.
    """
    H = hidden
    sig, tanh = activations(exact)
    if cell == "gru":

        @T.macro
        def gru(XP, Apre, base, stride, hb, cb, rh, az, BHN, Y, S, t, b, j):
            S[0] = sig(XP[t, b, j] + Apre[base])
            S[1] = sig(XP[t, b, H + j] + Apre[base + stride])
            S[2] = tanh(XP[t, b, 2 * H + j] + S[0] * (Apre[base + 2 * stride] + BHN[j]))
            hb[(t + 1) % 2, b, j] = (_f32(1.0) - S[1]) * S[2] + S[1] * hb[t % 2, b, j]
            Y[t, b, j] = hb[(t + 1) % 2, b, j]

        return gru
    if cell == "lstm":

        @T.macro
        def lstm(XP, Apre, base, stride, hb, cb, rh, az, BHN, Y, S, t, b, j):
            S[0] = sig(XP[t, b, j] + Apre[base])
            S[1] = sig(XP[t, b, H + j] + Apre[base + stride])
            S[2] = tanh(XP[t, b, 2 * H + j] + Apre[base + 2 * stride])
            S[3] = sig(XP[t, b, 3 * H + j] + Apre[base + 3 * stride])
            cb[b, j] = S[1] * cb[b, j] + S[0] * S[2]
            S[0] = tanh(cb[b, j])
            hb[(t + 1) % 2, b, j] = S[3] * S[0]
            Y[t, b, j] = hb[(t + 1) % 2, b, j]

        return lstm
    if phase == 0:  # kaldi GRU, reset phase: r * h for the candidate's product, keep a_z

        @T.macro
        def reset(XP, Apre, base, stride, hb, cb, rh, az, BHN, Y, S, t, b, j):
            S[0] = sig(XP[t, b, j] + Apre[base])
            rh[0, b, j] = S[0] * hb[t % 2, b, j]
            az[b, j] = Apre[base + stride]

        return reset

    @T.macro
    def update(XP, Apre, base, stride, hb, cb, rh, az, BHN, Y, S, t, b, j):
        S[0] = sig(XP[t, b, H + j] + az[b, j])
        S[1] = tanh(XP[t, b, 2 * H + j] + Apre[base])
        hb[(t + 1) % 2, b, j] = (_f32(1.0) - S[0]) * (S[1] * _f32(scale)) + S[0] * hb[t % 2, b, j]
        Y[t, b, j] = hb[(t + 1) % 2, b, j]

    return update


def _tree_sum(wg: int, gates: int):
    """Macro ``(red, tx)``: ``red[g * wg]`` becomes the sum of ``red[g * wg : (g + 1) * wg]``.

    The levels are unrolled in Python, so each is a statement of its own and TVM's barrier
    insertion puts a barrier between consecutive levels (not inside a condition).
    """

    @T.macro
    def done(red, tx):
        T.evaluate(0)

    tree = done
    half = 1
    while half < wg:
        tree = _tree_level(wg, gates, half, tree)
        half *= 2
    return tree


def _tree_level(wg: int, gates: int, half: int, rest):
    @T.macro
    def level(red, tx):
        for g in T.unroll(gates):
            if tx < half:
                red[g * wg + tx] = red[g * wg + tx] + red[g * wg + tx + half]
        rest(red, tx)

    return level


def _unit_step(hidden: int, gates: int, row0: int, wg: int, vec: int, from_rh: bool, finish):
    """Dense step kernel: a work-group per (unit, sequence), tree reduction in local memory."""
    H, G = hidden, gates
    rounds = -(-H // (wg * vec))
    tree = _tree_sum(wg, G)

    @T.macro
    def step(U, XP, hb, cb, rh, az, BHN, Y, t, nb):
        for j in T.thread_binding(H, thread="blockIdx.x"):
            for b in T.thread_binding(nb, thread="blockIdx.y"):
                for tx in T.thread_binding(wg, thread="threadIdx.x"):
                    red = T.alloc_buffer((G * wg,), "float32", scope="shared")
                    acc = T.alloc_buffer((G,), "float32", scope="local")
                    S = T.alloc_buffer((4,), "float32", scope="local")
                    for g in T.unroll(G):
                        acc[g] = T.float32(0)
                    for i in range(rounds):
                        for v in T.unroll(vec):
                            if (i * wg + tx) * vec + v < H:
                                for g in T.unroll(G):
                                    if from_rh:
                                        acc[g] = (
                                            acc[g]
                                            + U[(row0 + g * H + j) * H + (i * wg + tx) * vec + v]
                                            * rh[0, b, (i * wg + tx) * vec + v]
                                        )
                                    else:
                                        acc[g] = (
                                            acc[g]
                                            + U[(row0 + g * H + j) * H + (i * wg + tx) * vec + v]
                                            * hb[t % 2, b, (i * wg + tx) * vec + v]
                                        )
                    for g in T.unroll(G):
                        red[g * wg + tx] = acc[g]
                    tree(red, tx)
                    if tx == 0:
                        finish(XP, red, 0, wg, hb, cb, rh, az, BHN, Y, S, t, b, j)

    return step


def _panel_step(lanes: int, chunk: int, panels: int, panel0: int, rows: int, from_rh: bool):
    """BSPC product kernel: ``A[b * rows + row] = U[row, :] . src[b, :]`` over a panel range."""
    P, CH = lanes, chunk
    loads = -(-CH // P)

    @T.macro
    def product(PP, PR, COLS, VALS, hb, rh, A, t, nb):
        for p in T.thread_binding(panels, thread="blockIdx.x"):
            for b in T.thread_binding(nb, thread="blockIdx.y"):
                for lane in T.thread_binding(P, thread="threadIdx.x"):
                    xs = T.alloc_buffer((CH,), "float32", scope="shared")
                    acc = T.alloc_buffer((1,), "float32", scope="local")
                    acc[0] = T.float32(0)
                    for c in range((PP[panel0 + p + 1] - PP[panel0 + p] + CH - 1) // CH):
                        for q in range(loads):
                            if q * P + lane < CH and c * CH + q * P + lane < (
                                PP[panel0 + p + 1] - PP[panel0 + p]
                            ):
                                if from_rh:
                                    xs[q * P + lane] = rh[
                                        0, b, COLS[PP[panel0 + p] + c * CH + q * P + lane]
                                    ]
                                else:
                                    xs[q * P + lane] = hb[
                                        t % 2, b, COLS[PP[panel0 + p] + c * CH + q * P + lane]
                                    ]
                        for e in range(T.min(CH, PP[panel0 + p + 1] - PP[panel0 + p] - c * CH)):
                            acc[0] = acc[0] + VALS[(PP[panel0 + p] + c * CH + e) * P + lane] * xs[e]
                    A[b * rows + PR[(panel0 + p) * P + lane]] = acc[0]

    return product


def _gate_step(hidden: int, rows: int, finish):
    """Elementwise gate kernel of the BSPC path: a work-item per (unit, sequence)."""
    H, W = hidden, ELEMENTWISE_THREADS
    blocks = -(-H // W)

    @T.macro
    def gates(A, XP, hb, cb, rh, az, BHN, Y, t, nb):
        for bx in T.thread_binding(blocks, thread="blockIdx.x"):
            for b in T.thread_binding(nb, thread="blockIdx.y"):
                for tx in T.thread_binding(W, thread="threadIdx.x"):
                    S = T.alloc_buffer((4,), "float32", scope="local")
                    if bx * W + tx < H:
                        finish(XP, A, b * rows + bx * W + tx, H, hb, cb, rh, az, BHN, Y, S, t, b,
                               bx * W + tx)  # fmt: skip

    return gates


def _state_copies(hidden: int, layer: int, lstm: bool):
    """Kernels ``state[layer] -> hb[0] (, cb)`` and ``hb[T % 2] (, cb) -> hT (, cT)``."""
    H, W = hidden, ELEMENTWISE_THREADS
    blocks = -(-H // W)

    @T.macro
    def load(S0, hb, cb, nb):
        for bx in T.thread_binding(blocks, thread="blockIdx.x"):
            for b in T.thread_binding(nb, thread="blockIdx.y"):
                for tx in T.thread_binding(W, thread="threadIdx.x"):
                    if bx * W + tx < H:
                        if lstm:
                            hb[0, b, bx * W + tx] = S0[layer, 0, b, bx * W + tx]
                            cb[b, bx * W + tx] = S0[layer, 1, b, bx * W + tx]
                        else:
                            hb[0, b, bx * W + tx] = S0[layer, b, bx * W + tx]

    @T.macro
    def store(hb, cb, HT, CT, nt, nb):
        for bx in T.thread_binding(blocks, thread="blockIdx.x"):
            for b in T.thread_binding(nb, thread="blockIdx.y"):
                for tx in T.thread_binding(W, thread="threadIdx.x"):
                    if bx * W + tx < H:
                        HT[b, bx * W + tx] = hb[nt % 2, b, bx * W + tx]
                        if lstm:
                            CT[b, bx * W + tx] = cb[b, bx * W + tx]

    return load, store


@functools.lru_cache(maxsize=64)
def gpu_dense_sequence(
    cell: str,
    hidden: int,
    work_group: int = 64,
    vector: int = 4,
    scale: float = 1.0,
    exact: bool = True,
    layer: int = 0,
) -> tvm.tirx.PrimFunc:
    """OpenCL sequence kernel of a layer with a dense recurrent weight (module docstring).

    Parameters
    ----------
    cell : {"gru", "kaldi_gru", "lstm"}
    hidden : int
    work_group : int
        Threads per unit (a power of two).
    vector : int
        Consecutive columns per thread and round.
    scale : float
        Candidate scale of the kaldi GRU.
    exact : bool
        OpenCL ``exp`` for the activations (else the polynomial forms).
    layer : int
        Which layer of the stacked state the kernel starts from.
    """
    _check_cell(cell)
    if work_group & (work_group - 1):
        raise ValueError(f"work_group must be a power of two, got {work_group}")
    H, G = hidden, 4 if cell == "lstm" else 3
    if cell == "kaldi_gru":
        phases = [
            _unit_step(H, 2, 0, work_group, vector, False, _finish(cell, 0, H, scale, exact)),
            _unit_step(H, 1, 2 * H, work_group, vector, True, _finish(cell, 1, H, scale, exact)),
        ]
    else:
        phases = [_unit_step(H, G, 0, work_group, vector, False, _finish(cell, 0, H, 1, exact))]
    step0 = phases[0]
    step1 = phases[-1]
    two = len(phases) == 2
    load, store = _state_copies(H, layer, cell == "lstm")

    @T.macro
    def steps(U, XP, hb, cb, rh, az, BHN, Y, nt, nb):
        for t in range(nt):
            step0(U, XP, hb, cb, rh, az, BHN, Y, t, nb)
            if two:
                step1(U, XP, hb, cb, rh, az, BHN, Y, t, nb)

    if cell == "lstm":

        @T.prim_func
        def lstm_sequence_opencl(
            xp_h: T.handle,
            s0_h: T.handle,
            u_h: T.handle,
            bhn_h: T.handle,
            y_h: T.handle,
            ht_h: T.handle,
            ct_h: T.handle,
        ):
            T.func_attr({"tirx.noalias": True})
            nt = T.int64()
            nb = T.int64()
            XP = T.match_buffer(xp_h, (nt, nb, G * H), "float32")
            S0 = T.match_buffer(s0_h, (T.int64(), 2, nb, H), "float32")
            U = T.match_buffer(u_h, (G * H * H,), "float32")
            BHN = T.match_buffer(bhn_h, (H,), "float32")
            Y = T.match_buffer(y_h, (nt, nb, H), "float32")
            HT = T.match_buffer(ht_h, (nb, H), "float32")
            CT = T.match_buffer(ct_h, (nb, H), "float32")
            hb = T.alloc_buffer((2, nb, H), "float32")
            cb = T.alloc_buffer((nb, H), "float32")
            load(S0, hb, cb, nb)
            steps(U, XP, hb, cb, hb, cb, BHN, Y, nt, nb)
            store(hb, cb, HT, CT, nt, nb)

        return lstm_sequence_opencl

    @T.prim_func
    def gru_sequence_opencl(
        xp_h: T.handle,
        s0_h: T.handle,
        u_h: T.handle,
        bhn_h: T.handle,
        y_h: T.handle,
        ht_h: T.handle,
    ):
        T.func_attr({"tirx.noalias": True})
        nt = T.int64()
        nb = T.int64()
        XP = T.match_buffer(xp_h, (nt, nb, G * H), "float32")
        S0 = T.match_buffer(s0_h, (T.int64(), nb, H), "float32")
        U = T.match_buffer(u_h, (G * H * H,), "float32")
        BHN = T.match_buffer(bhn_h, (H,), "float32")
        Y = T.match_buffer(y_h, (nt, nb, H), "float32")
        HT = T.match_buffer(ht_h, (nb, H), "float32")
        hb = T.alloc_buffer((2, nb, H), "float32")
        rh = T.alloc_buffer((1, nb, H), "float32")
        az = T.alloc_buffer((nb, H), "float32")
        load(S0, hb, az, nb)
        steps(U, XP, hb, az, rh, az, BHN, Y, nt, nb)
        store(hb, az, HT, HT, nt, nb)

    return gru_sequence_opencl


@functools.lru_cache(maxsize=64)
def gpu_bspc_sequence(
    cell: str,
    hidden: int,
    npanels: int,
    ncols: int,
    rz_panels: int = 0,
    panel_rows: int = 16,
    chunk: int = 32,
    scale: float = 1.0,
    exact: bool = True,
    layer: int = 0,
) -> tvm.tirx.PrimFunc:
    """OpenCL sequence kernel of a layer with a BSPC recurrent weight (module docstring).

    Parameters
    ----------
    cell : {"gru", "kaldi_gru", "lstm"}
    hidden : int
    npanels, ncols : int
        Panels and stored columns of the packed layout(s).
    rz_panels : int
        kaldi GRU only: panels of the ``r, z`` layout (the candidate's follow).
    panel_rows, chunk : int
        Lanes per panel and columns staged per round.
    scale, exact, layer
        As for :func:`gpu_dense_sequence`.
    """
    _check_cell(cell)
    H, G, P = hidden, 4 if cell == "lstm" else 3, panel_rows
    if cell == "kaldi_gru":
        if not 0 < rz_panels < npanels:
            raise ValueError(f"rz_panels must be in (0, {npanels}), got {rz_panels}")
        prod0 = _panel_step(P, chunk, rz_panels, 0, 2 * H, False)
        gate0 = _gate_step(H, 2 * H, _finish(cell, 0, H, scale, exact))
        prod1 = _panel_step(P, chunk, npanels - rz_panels, rz_panels, H, True)
        gate1 = _gate_step(H, H, _finish(cell, 1, H, scale, exact))
        two = True
    else:
        prod0 = prod1 = _panel_step(P, chunk, npanels, 0, G * H, False)
        gate0 = gate1 = _gate_step(H, G * H, _finish(cell, 0, H, 1, exact))
        two = False
    load, store = _state_copies(H, layer, cell == "lstm")

    @T.macro
    def steps(PP, PR, COLS, VALS, XP, hb, cb, rh, az, A, BHN, Y, nt, nb):
        for t in range(nt):
            prod0(PP, PR, COLS, VALS, hb, rh, A, t, nb)
            gate0(A, XP, hb, cb, rh, az, BHN, Y, t, nb)
            if two:
                prod1(PP, PR, COLS, VALS, hb, rh, A, t, nb)
                gate1(A, XP, hb, cb, rh, az, BHN, Y, t, nb)

    if cell == "lstm":

        @T.prim_func
        def bspc_lstm_sequence_opencl(
            xp_h: T.handle,
            s0_h: T.handle,
            pp_h: T.handle,
            pr_h: T.handle,
            cols_h: T.handle,
            vals_h: T.handle,
            bhn_h: T.handle,
            y_h: T.handle,
            ht_h: T.handle,
            ct_h: T.handle,
        ):
            T.func_attr({"tirx.noalias": True})
            nt = T.int64()
            nb = T.int64()
            XP = T.match_buffer(xp_h, (nt, nb, G * H), "float32")
            S0 = T.match_buffer(s0_h, (T.int64(), 2, nb, H), "float32")
            PP = T.match_buffer(pp_h, (npanels + 1,), "int32")
            PR = T.match_buffer(pr_h, (npanels * P,), "int32")
            COLS = T.match_buffer(cols_h, (ncols,), "int32")
            VALS = T.match_buffer(vals_h, (ncols * P,), "float32")
            BHN = T.match_buffer(bhn_h, (H,), "float32")
            Y = T.match_buffer(y_h, (nt, nb, H), "float32")
            HT = T.match_buffer(ht_h, (nb, H), "float32")
            CT = T.match_buffer(ct_h, (nb, H), "float32")
            hb = T.alloc_buffer((2, nb, H), "float32")
            cb = T.alloc_buffer((nb, H), "float32")
            A = T.alloc_buffer((nb * G * H,), "float32")
            load(S0, hb, cb, nb)
            steps(PP, PR, COLS, VALS, XP, hb, cb, hb, cb, A, BHN, Y, nt, nb)
            store(hb, cb, HT, CT, nt, nb)

        return bspc_lstm_sequence_opencl

    @T.prim_func
    def bspc_gru_sequence_opencl(
        xp_h: T.handle,
        s0_h: T.handle,
        pp_h: T.handle,
        pr_h: T.handle,
        cols_h: T.handle,
        vals_h: T.handle,
        bhn_h: T.handle,
        y_h: T.handle,
        ht_h: T.handle,
    ):
        T.func_attr({"tirx.noalias": True})
        nt = T.int64()
        nb = T.int64()
        XP = T.match_buffer(xp_h, (nt, nb, G * H), "float32")
        S0 = T.match_buffer(s0_h, (T.int64(), nb, H), "float32")
        PP = T.match_buffer(pp_h, (npanels + 1,), "int32")
        PR = T.match_buffer(pr_h, (npanels * P,), "int32")
        COLS = T.match_buffer(cols_h, (ncols,), "int32")
        VALS = T.match_buffer(vals_h, (ncols * P,), "float32")
        BHN = T.match_buffer(bhn_h, (H,), "float32")
        Y = T.match_buffer(y_h, (nt, nb, H), "float32")
        HT = T.match_buffer(ht_h, (nb, H), "float32")
        hb = T.alloc_buffer((2, nb, H), "float32")
        rh = T.alloc_buffer((1, nb, H), "float32")
        az = T.alloc_buffer((nb, H), "float32")
        A = T.alloc_buffer((nb * G * H,), "float32")
        load(S0, hb, az, nb)
        steps(PP, PR, COLS, VALS, XP, hb, az, rh, az, A, BHN, Y, nt, nb)
        store(hb, az, HT, HT, nt, nb)

    return bspc_gru_sequence_opencl


@functools.lru_cache(maxsize=64)
def gpu_panel_linear(
    rows: int,
    cols: int,
    npanels: int,
    ncols: int,
    panel_rows: int = 16,
    chunk: int = 32,
    frames: int = 4,
    activation: str = "none",
    exact: bool = True,
) -> tvm.tirx.PrimFunc:
    """OpenCL ``y = act(x W^T + b)`` over a symbolic number of frames, ``W`` in panels.

    A work-group per (panel, tile of ``frames`` frames): the tile's ``x[:, cols[e]]`` of a
    chunk is staged in local memory once for the panel's ``panel_rows`` lanes.
    """
    M, K, P, CH, F = rows, cols, panel_rows, chunk, frames
    loads = -(-(F * CH) // P)
    act = epilogue(activation, exact)

    @T.prim_func
    def linear_opencl(
        x_h: T.handle,
        pp_h: T.handle,
        pr_h: T.handle,
        cols_h: T.handle,
        vals_h: T.handle,
        bias_h: T.handle,
        y_h: T.handle,
    ):
        T.func_attr({"tirx.noalias": True})
        n = T.int64()
        X = T.match_buffer(x_h, (n, K), "float32")
        PP = T.match_buffer(pp_h, (npanels + 1,), "int32")
        PR = T.match_buffer(pr_h, (npanels * P,), "int32")
        COLS = T.match_buffer(cols_h, (ncols,), "int32")
        VALS = T.match_buffer(vals_h, (ncols * P,), "float32")
        BIAS = T.match_buffer(bias_h, (npanels * P,), "float32")
        Y = T.match_buffer(y_h, (n, M), "float32")
        for p in T.thread_binding(npanels, thread="blockIdx.x"):
            for fb in T.thread_binding((n + F - 1) // F, thread="blockIdx.y"):
                for lane in T.thread_binding(P, thread="threadIdx.x"):
                    xs = T.alloc_buffer((F * CH,), "float32", scope="shared")
                    acc = T.alloc_buffer((F,), "float32", scope="local")
                    for f in range(F):
                        acc[f] = T.float32(0)
                    for c in range((PP[p + 1] - PP[p] + CH - 1) // CH):
                        for q in range(loads):
                            if (
                                q * P + lane < F * CH
                                and c * CH + (q * P + lane) % CH < PP[p + 1] - PP[p]
                                and fb * F + (q * P + lane) // CH < n
                            ):
                                xs[q * P + lane] = X[
                                    fb * F + (q * P + lane) // CH,
                                    COLS[PP[p] + c * CH + (q * P + lane) % CH],
                                ]
                        for e in range(T.min(CH, PP[p + 1] - PP[p] - c * CH)):
                            for f in range(F):
                                acc[f] = (
                                    acc[f] + VALS[(PP[p] + c * CH + e) * P + lane] * xs[f * CH + e]
                                )
                    for f in range(F):
                        if fb * F + f < n:
                            Y[fb * F + f, PR[p * P + lane]] = act(acc[f] + BIAS[p * P + lane])

    return linear_opencl


def _check_cell(cell: str) -> None:
    if cell not in ("gru", "kaldi_gru", "lstm"):
        raise ValueError(f"cell must be gru, kaldi_gru or lstm, got {cell!r}")
