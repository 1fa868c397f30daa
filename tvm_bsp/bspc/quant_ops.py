"""The numpy reference of the int8 BSPC products: what an int8 kernel computes, exactly.

Activations
-----------
Activations are quantized to int8 too, per column (one column = one frame of one sequence),
with float32 arithmetic in this order, so a kernel can reproduce the integers bit for bit:

``"state"`` (a GRU's ``h``, which lies in ``[-1, 1]``)
    fixed scale ``s = float32(1 / 127)``: ``q = clip(rint(float32(h * 127)), -127, 127)``;
``"input"`` (any other input: features, the layer below's output)
    dynamic max-abs scale per column: ``a = max |x[:, b]|``, ``inv = float32(127) / a``,
    ``s = a / float32(127)``, ``q = clip(rint(float32(x * inv)), -127, 127)``. A column with
    ``a < 1e-30`` (all zeros, padding) quantizes to zeros with ``s = 1``.

``rint`` rounds half to even (as ``numpy.rint`` and ``torch.round`` do).

Product
-------
``acc = sum q_w * q_x`` in int32 over the stored values of each output row (``"row"`` scales)
or of each block row (``"block_row"``), then

- ``"row"``: ``y[r] = float32(float32(acc[r]) * s_w[r]) * s_x``;
- ``"block_row"``: ``y[r] = sum over the row's blocks, in column-block order, of
  float32(float32(acc[entry]) * s_w[entry]) * s_x``, summed in float32.

Overflow bound: ``|acc| <= 127 * 127 * K`` with ``K`` the most values a row stores (``K <= N``),
so int32 cannot overflow while ``K <= 133 144`` (``(2**31 - 1) // 127**2``); the largest
shipped matrix (``N = 1024``) stays below ``1.7e7``. :func:`check_accumulator_bound` checks it in
int64 before every product. ``float32(acc)`` is exact while ``127**2 * K < 2**24``, i.e.
``K <= 1040``: every matrix of the reference GRU and the shipped models.
"""

from __future__ import annotations

import numpy as np

from tvm_bsp.bspc.quant import QMAX, QuantizedBSPC

ACTIVATIONS = ("input", "state")
STATE_SCALE = np.float32(1.0 / QMAX)
"""The fixed scale of a GRU state (``h`` in ``[-1, 1]``)."""
AMAX_FLOOR = 1e-30
"""A column whose max-abs is below this quantizes to zeros with scale 1."""
INT32_MAX = int(np.iinfo(np.int32).max)
_UNIT = 2.0**-24  # float32 unit roundoff


def quantize_activations(x: np.ndarray, kind: str = "input") -> tuple[np.ndarray, np.ndarray]:
    """Quantize activations column by column (rule: module docstring).

    Parameters
    ----------
    x : array_like, shape (N,) or (N, B)
        Finite float values; a column is one frame.
    kind : {"input", "state"}
        Dynamic per-column max-abs scale, or the fixed state scale ``1 / 127``.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        int8 values shaped like ``x`` and float32 scales, one per column (shape ``(B,)``, or
        ``(1,)`` for a 1-D ``x``).

    Raises
    ------
    ValueError
        If ``kind`` is unknown, ``x`` is not 1-D or 2-D, or holds a non-finite value.
    """
    if kind not in ACTIVATIONS:
        raise ValueError(f"activation kind must be one of {ACTIVATIONS}, got {kind!r}")
    x = np.asarray(x, np.float32)
    if x.ndim not in (1, 2):
        raise ValueError(f"activations must be (N,) or (N, B), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("activations hold a non-finite value")
    cols = x.reshape(x.shape[0], -1)
    if kind == "state":
        scales = np.full(cols.shape[1], STATE_SCALE, np.float32)
        inv = np.full(cols.shape[1], np.float32(QMAX), np.float32)
    else:
        amax = np.abs(cols).max(axis=0) if cols.shape[0] else np.zeros(cols.shape[1], np.float32)
        live = amax >= AMAX_FLOOR
        safe = np.where(live, amax, np.float32(1.0)).astype(np.float32)
        inv = np.where(live, np.float32(QMAX) / safe, np.float32(0.0)).astype(np.float32)
        scales = np.where(live, safe / np.float32(QMAX), np.float32(1.0)).astype(np.float32)
    q = np.clip(np.rint(cols * inv[None, :]), -QMAX, QMAX).astype(np.int8)
    return q.reshape(x.shape), scales


def accumulator_bound(matrix: QuantizedBSPC) -> int:
    """Largest possible ``|acc|``: ``127 * 127 * (most values a row stores)``, in int64."""
    work = matrix.row_work()
    k = int(work.max()) if work.size else 0
    return int(np.int64(QMAX) * np.int64(QMAX) * np.int64(k))


def check_accumulator_bound(matrix: QuantizedBSPC) -> int:
    """Return :func:`accumulator_bound`; raise ``OverflowError`` if it exceeds int32."""
    bound = accumulator_bound(matrix)
    if bound > INT32_MAX:
        raise OverflowError(
            f"a row of this {matrix.shape[0]}x{matrix.shape[1]} matrix stores "
            f"{bound // QMAX**2} values: int32 accumulators could reach {bound} > {INT32_MAX}"
        )
    return bound


def int8_accumulate(matrix: QuantizedBSPC, xq: np.ndarray) -> np.ndarray:
    """The int32 accumulators of ``q_W @ q_x``.

    Parameters
    ----------
    matrix : QuantizedBSPC
    xq : numpy.ndarray of int8, shape (N, B)
        Quantized activations.

    Returns
    -------
    numpy.ndarray of int32
        ``(M, B)`` per output row for ``"row"`` scales, ``(len(rows), B)`` per block row
        (aligned with ``matrix.rows``) for ``"block_row"``.

    Raises
    ------
    ValueError
        If ``xq`` is not a 2-D int8 array with ``N`` rows.
    OverflowError
        If int32 accumulators could overflow (:func:`check_accumulator_bound`).
    """
    if not isinstance(xq, np.ndarray) or xq.dtype != np.int8 or xq.ndim != 2:
        raise ValueError("quantized activations must be a 2-D int8 array (N, B)")
    if xq.shape[0] != matrix.shape[1]:
        raise ValueError(f"xq has {xq.shape[0]} rows, the matrix has {matrix.shape[1]} columns")
    check_accumulator_bound(matrix)
    per_row = matrix.granularity == "row"
    out_rows = matrix.shape[0] if per_row else matrix.rows.size
    acc = np.zeros((out_rows, xq.shape[1]), np.int32)
    for b in range(matrix.nblocks):
        rows, cols, vals = matrix.block(b)
        if not (rows.size and cols.size):
            continue
        partial = vals.astype(np.int32) @ xq[cols].astype(np.int32)  # x[cols] loaded once
        if per_row:
            acc[rows] += partial
        else:
            start = int(matrix.block_row_ptr[b])
            acc[start : start + rows.size] = partial
    return acc


def scale_accumulators(matrix: QuantizedBSPC, acc: np.ndarray, x_scales: np.ndarray) -> np.ndarray:
    """Turn int32 accumulators into the float32 product (order: module docstring)."""
    x_scales = np.asarray(x_scales, np.float32)
    scaled = acc.astype(np.float32) * matrix.scales[:, None]
    scaled = (scaled * x_scales[None, :]).astype(np.float32)
    if matrix.granularity == "row":
        return scaled
    y = np.zeros((matrix.shape[0], acc.shape[1]), np.float32)
    np.add.at(y, matrix.rows.astype(np.int64), scaled)  # entries are in column-block order
    return y


def int8_matmat(matrix: QuantizedBSPC, x: np.ndarray, activations: str = "input") -> np.ndarray:
    """``W @ X`` as an int8 kernel computes it: ``X`` quantized per column, int32 accumulation.

    Parameters
    ----------
    matrix : QuantizedBSPC
    x : array_like, shape (N, B)
        Float activations, one frame per column.
    activations : {"input", "state"}
        How ``x`` is quantized (:func:`quantize_activations`).

    Returns
    -------
    numpy.ndarray of float32, shape (M, B)
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must be (N, B), got shape {x.shape}")
    xq, sx = quantize_activations(x, activations)
    return scale_accumulators(matrix, int8_accumulate(matrix, xq), sx)


def int8_matvec(matrix: QuantizedBSPC, x: np.ndarray, activations: str = "input") -> np.ndarray:
    """``W @ x`` for one frame ``x`` of shape ``(N,)`` (see :func:`int8_matmat`)."""
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"x must be (N,), got shape {x.shape}")
    return int8_matmat(matrix, x[:, None], activations)[:, 0]


def int8_error_bound(
    matrix: QuantizedBSPC, x: np.ndarray, activations: str = "input"
) -> np.ndarray:
    """A guaranteed bound on ``|int8_matmat(q(W), x) - W @ x|`` (``W @ x`` in float32 BSPC).

    With ``W = W_hat + E`` (``W_hat = s_w * q_w``, ``|E| <= s_w / 2``) and ``x = x_hat + e``,
    ``W x - W_hat x_hat = E x + W_hat e`` exactly, so per row ``r`` and column ``b``::

        bound = sum_c (s_w[r, c] / 2 * |x[c, b]| + |W_hat[r, c]| * e[c, b])
              + (K + col_blocks + 4) * 2**-23 * sum_c (|W_hat[r, c]| + s_w / 2) (|x| + e)

    over the row's stored values, with ``e = max(s_x / 2, |x| - 127 s_x)`` (the rounding error,
    or the clamping error of a state outside ``[-1, 1]``) and ``K`` the row's stored values. The
    second term covers float32 rounding in both products (the fp32 BSPC sum of ``K`` terms, the
    int8 path's scaling and block-row sums).

    Returns
    -------
    numpy.ndarray of float64, shaped ``(M,)`` for a 1-D ``x``, else ``(M, B)``.
    """
    x = np.asarray(x, np.float32)
    cols = x.reshape(x.shape[0], -1).astype(np.float64)
    _, sx = quantize_activations(x, activations)
    sx = sx.astype(np.float64)[None, :]
    e = np.maximum(sx / 2, np.abs(cols) - QMAX * sx)
    s_half = matrix.pattern(matrix.value_scales().astype(np.float64) / 2).to_dense()
    w_hat = np.abs(matrix.values.astype(np.float64) * matrix.value_scales().astype(np.float64))
    w_abs = matrix.pattern(w_hat).to_dense()
    quant = s_half @ np.abs(cols) + w_abs @ e
    k = matrix.row_work().astype(np.float64)[:, None]
    rounding = (k + matrix.col_blocks + 4) * 2 * _UNIT * ((w_abs + s_half) @ (np.abs(cols) + e))
    bound = quant + rounding
    return bound[:, 0] if x.ndim == 1 else bound
