"""The OpenCL (mobile GPU) kernels.

- :mod:`.knobs`: the OpenCL knobs of the RNN and mat-mat kernels and their defaults per device;
- :mod:`.products`: the device kernels (launches, products, the gate kernel);
- :mod:`.sequence`: the sequence kernels of every cell x form (a host loop of launches);
- :mod:`.linear`: the mat-mat kernel (input projection, dense head);
- :mod:`.rnn`: pick, instantiate and feed the kernels of one layer.
"""
