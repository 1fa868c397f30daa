"""Our importer: torch GRU/LSTM (+ Linear heads) and the pytorch-kaldi GRU into Relax.

- :mod:`.model`: the model description (:class:`RNNModel` and its layers), equations and
  state layout.
- :mod:`.torch_import`: :func:`from_torch` and the accepted module shapes.
- :mod:`.kaldi_gru`: :class:`KaldiGRU`, the torch reference of RTMobile's GRU.
- :mod:`.relax_import`: :func:`to_relax`, the Relax module with placeholder layers.
- :mod:`.reference`: :func:`reference_forward`, a numpy reference of a description.
- :mod:`.onnx_import`: :func:`from_onnx` (ONNX GRU/LSTM graphs; ``onnx`` imported lazily).
- :mod:`.dispatch`: :func:`import_model`, torch or ONNX by the object given.
"""

from tvm_bsp.frontend.dispatch import import_model
from tvm_bsp.frontend.kaldi_gru import KaldiGRU
from tvm_bsp.frontend.model import CELL_GATES, Activation, DenseLayer, RNNLayer, RNNModel
from tvm_bsp.frontend.onnx_import import OnnxSignature, from_onnx, import_onnx
from tvm_bsp.frontend.onnx_values import UnsupportedOnnxError
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
    "OnnxSignature",
    "RNNLayer",
    "RNNModel",
    "UnsupportedModuleError",
    "UnsupportedOnnxError",
    "from_onnx",
    "from_torch",
    "import_model",
    "import_onnx",
    "reference_forward",
    "to_relax",
]
