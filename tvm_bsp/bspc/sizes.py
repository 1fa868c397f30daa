"""Storage of the same matrix in scipy's CSR and BSR formats, for comparison with BSPC."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def scipy_csr_nbytes(dense: np.ndarray) -> int:
    """Bytes of scipy's CSR of ``dense`` (data + indices + indptr)."""
    csr = sp.csr_matrix(dense)
    return int(csr.data.nbytes + csr.indices.nbytes + csr.indptr.nbytes)


def scipy_bsr_nbytes(dense: np.ndarray, blocksize: tuple[int, int] = (8, 1)) -> int:
    """Bytes of scipy's BSR of ``dense`` with ``blocksize`` (data + indices + indptr).

    The default ``(8, 1)`` is the row-vector block a SIMD kernel uses (8 float32 lanes) and
    divides every shape of the reference GRU.
    """
    bsr = sp.bsr_matrix(dense, blocksize=blocksize)
    return int(bsr.data.nbytes + bsr.indices.nbytes + bsr.indptr.nbytes)
