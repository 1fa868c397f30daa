"""The loop over which one phase of a parallel time loop shares its work among threads.

Inside a ``pragma_parallel_launch_point`` region every thread runs everything that is not
in a parallel loop, and a ``T.parallel`` loop of extent 1 is simplified away before code
generation: its body then runs on every thread at once, and the phase's barrier goes with
it (seen as a race on the kaldi GRU of 8 units with 4 runtime threads, and as "Cannot find
parallel loop within parallel launch" for a dense layer of one tile). So a phase's loop has
at least two iterations, and the kernels guard their body with ``if i < extent``.
"""

from __future__ import annotations

from tvm.script import tirx as T


def phase_loop(extent: int, parallel: bool):
    """``T.parallel`` over ``max(extent, 2)`` iterations, or ``T.serial(extent)``.

    Parameters
    ----------
    extent : int
        Work items of the phase (tiles, panel stripes).
    parallel : bool
        Whether the kernel runs in a parallel region.
    """
    return T.parallel(max(extent, 2)) if parallel else T.serial(extent)
