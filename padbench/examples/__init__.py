"""Small example models for `padbench check` (see `padbench.examples.models`).

Each factory in `padbench.examples.models` takes no argument and returns an
``nn.Module`` whose forward is ``(x [B, L, 16], key_padding_mask [B, L])``, so it
can be named on the command line::

    padbench check padbench.examples.models:masked_mean_pool --d-model 16
    padbench check padbench.examples.models:unmasked_mean_pool --d-model 16   # exit 1: leaks
"""
