"""The core every other layer of normgrad builds on; it imports nothing of theirs.

- ``validate``: input checks and their error messages (``NonFiniteError`` for NaN/Inf)
- ``stats``: moments, centring, merging partial statistics, the closed-form
  backward, ``NormStats``
- ``specs``: one ``NormSpec`` per norm: the view of x and the axes its statistics reduce over
- ``running``: the running-statistics rule in its two conventions (CS231n, PyTorch)
- ``sync``: the communicator protocol and the one synchronized batch-norm step
"""
