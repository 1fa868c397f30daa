"""The ``tvm-bsp`` command (also ``python -m tvm_bsp``): argument parsing and handlers only.

Each module registers its subcommands on the parser that :func:`build_parser` makes and
imports the library (torch, TVM's compiler) inside its handlers, so ``tvm-bsp --help`` is
cheap. Exit codes: 0 success, 1 a failure with a message on stderr, 2 bad usage.

=====================  ===================================================================
module                 commands
=====================  ===================================================================
:mod:`.command`        ``build_parser``, ``main``: the command and its subcommands
:mod:`.args`           option groups and converters shared by the subcommands
:mod:`.demo`           ``demo`` (the driver: :mod:`tvm_bsp.experiments.demo.run`)
:mod:`.speech`         ``train``, ``prune``
:mod:`.tune`           ``tune``, ``rpc-server``
:mod:`.block_search`   ``tune --block-search`` and ``scripts/block_search.py``
:mod:`.deploy`         ``compile``, ``deploy``, ``bench``
:mod:`.wav`            WAV input of ``deploy --wav`` (16 kHz MFCC-39)
=====================  ===================================================================

The device-side runner, ``python -m tvm_bsp.runtime.runner``, is not part of this package:
it ships to devices with :mod:`tvm_bsp.runtime`.
"""

from tvm_bsp.cli.command import build_parser, main

__all__ = ["build_parser", "main"]
