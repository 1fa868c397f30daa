"""The CPU (``llvm``) kernels: x86 on the host, aarch64 NEON on phones.

- :mod:`.products`: the recurrent product of each weight form (dense gate tiles, BSPC panel
  walk) and the tile walk;
- :mod:`.sequence`: the time-loop kernel of a layer (parallel time loop, a barrier per phase;
  :mod:`.phase` the loop over which a phase shares its work);
- :mod:`.linear`: the mat-mat kernel ``y = act(x W^T + b)`` over a symbolic number of frames;
- :mod:`.rnn`: pick, instantiate and feed the kernels of one layer.
"""
