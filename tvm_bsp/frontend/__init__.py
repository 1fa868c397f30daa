"""Our importer: torch GRU/LSTM (+ Linear heads) and the pytorch-kaldi GRU into Relax.

- :mod:`.model`: the model description (:class:`RNNModel` and its layers), equations and
  state layout.
- :mod:`.torch_import`: :func:`from_torch` and the accepted module shapes.
- :mod:`.kaldi_gru`: :class:`KaldiGRU`, the torch reference of RTMobile's GRU.
- :mod:`.relax_import`: :func:`to_relax`, the Relax module with placeholder layers.
- :mod:`.reference`: :func:`reference_forward`, a numpy reference of a description.
"""

from tvm_bsp.frontend.kaldi_gru import KaldiGRU
from tvm_bsp.frontend.model import CELL_GATES, Activation, DenseLayer, RNNLayer, RNNModel
from tvm_bsp.frontend.reference import reference_forward
from tvm_bsp.frontend.relax_import import LINEAR_OP, RNN_OPS, to_relax
from tvm_bsp.frontend.torch_import import UnsupportedModuleError, from_torch

__all__ = [
    "CELL_GATES",
    "LINEAR_OP",
    "RNN_OPS",
    "Activation",
    "DenseLayer",
    "KaldiGRU",
    "RNNLayer",
    "RNNModel",
    "UnsupportedModuleError",
    "from_torch",
    "reference_forward",
    "to_relax",
]
