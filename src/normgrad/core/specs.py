"""Every normalization, described once.

A norm is ``out = gamma * (x - mean) / sqrt(var + eps) + beta`` (RMS norm: no
mean, var = mean(x**2)), and the norms differ only in which values share a mean
and a variance. Each is described here by a ``NormSpec``, and every layer of
normgrad (functional, kernels, nn, torch) reads that description instead of
knowing the norm by name.

The description is a 4-D view of x, ``(N, G, K, L)``:

- N: the batch (or, for norms over trailing features, every leading position)
- G, K: the channels, split into G groups of K (C = G * K); gamma and beta hold
  one value per channel, i.e. they span axes 1 and 2
- L: positions that share a channel (spatial positions; 1 for (N, D) data)

and the axes its statistics reduce over:

- ``across="batch"``: per channel, over N and L, axes (0, 3): batch norm. Such
  statistics combine across shards, processes and chunks (Chan's formula).
- ``across="sample"``: per sample and group, over K and L, axes (2, 3): layer,
  group, instance and RMS norm.

| norm      | x                | view (N, G, K, L)    | reduces |
|-----------|------------------|----------------------|---------|
| batch     | (N, C, *spatial) | (N, 1, C, prod(sp))  | (0, 3)  |
| layer     | (..., D)         | (prod(...), 1, D, 1) | (2, 3)  |
| group     | (N, C, *spatial) | (N, G, C/G, prod(sp))| (2, 3)  |
| instance  | (N, C, *spatial) | (N, C, 1, prod(sp))  | (2, 3)  |
| rms       | (..., D)         | (prod(...), 1, D, 1) | (2, 3), uncentred |

A new norm is one more ``NormSpec``; every backend and front end serves it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from math import prod

import numpy as np

from . import validate as v

View = tuple[int, int, int, int]


ACROSS = ("batch", "sample")
GROUPS = ("one", "given", "channel")


@dataclass(frozen=True)
class NormSpec:
    """How one norm views x and where its statistics come from.

    - name: 'batch', 'layer', 'group', ... (letters, digits and underscores)
    - features_last: x is (..., C) with channels on its last axis (layer, RMS
      norm); else x is (N, C, *spatial) with channels on axis 1
    - across: 'batch' (statistics per channel over the batch and positions) or
      'sample' (per sample and group of channels)
    - groups: 'one' (G = 1), 'given' (the caller's G, a divisor of C), 'channel'
      (G = C)
    - centered: subtract the mean (False: var is the mean square, as RMS norm)
    - running_stats: keeps running averages for evaluation; needs statistics
      that belong to channels (across the batch, or per sample with one channel
      per group, averaged over the batch)

    Every field is honoured by every backend (functional, kernels, torch); a
    combination that makes no sense is refused here, naming the field.
    """

    name: str
    features_last: bool
    across: str
    groups: str = "one"
    centered: bool = True
    running_stats: bool = False

    def __post_init__(self):
        if not (isinstance(self.name, str) and self.name.isidentifier()):
            raise ValueError(f"NormSpec name must be letters, digits and underscores, got {self.name!r}")
        if self.across not in ACROSS:
            raise ValueError(f"NormSpec across must be one of {ACROSS}, got {self.across!r}")
        if self.groups not in GROUPS:
            raise ValueError(f"NormSpec groups must be one of {GROUPS}, got {self.groups!r}")
        for field in ("features_last", "centered", "running_stats"):
            if not isinstance(getattr(self, field), bool):
                raise TypeError(f"NormSpec {field} must be a bool, got {getattr(self, field)!r}")
        if self.running_stats and self.across == "sample" and self.groups != "channel":
            raise ValueError("NormSpec running_stats needs statistics per channel: across='batch', or "
                             "across='sample' with groups='channel'")

    @property
    def reduce_axes(self) -> tuple[int, int]:
        """Axes of the (N, G, K, L) view that share one mean and variance."""
        return (0, 3) if self.across == "batch" else (2, 3)

    # the axes gamma and beta are shared over, in the view
    param_axes = (0, 3)

    @property
    def code(self) -> str:
        """The spec as one string (what ``torch.ops.normgrad`` operators take); ``from_code`` reads it."""
        return "|".join((self.name, str(int(self.features_last)), self.across, self.groups, str(int(self.centered)),
                         str(int(self.running_stats))))

    def with_channel_stats(self) -> "NormSpec":
        """This norm with statistics per channel: how it normalizes with running statistics."""
        return self if self.across == "batch" else replace(self, across="batch", running_stats=False)

    def num_groups(self, C: int, G: int | None = None) -> int:
        """G for ``C`` channels: 1, the caller's ``G`` (a divisor of C), or C."""
        if self.groups == "one":
            return 1
        if self.groups == "channel":
            return C
        G = v.integer_value("G", G)
        if G < 1 or C % G:
            raise ValueError(f"G must be a positive divisor of the channel count C={C}, got G={G}")
        return G

    def channels(self, shape: tuple[int, ...]) -> int:
        """C: the number of gamma/beta values x of ``shape`` needs."""
        return shape[-1] if self.features_last else shape[1]

    def view(self, shape: tuple[int, ...], G: int | None = None) -> View:
        """The (N, G, K, L) view of an x of ``shape`` (C-contiguous x reshapes without a copy)."""
        C = self.channels(shape)
        groups = self.num_groups(C, G)
        if self.features_last:
            return (prod(shape[:-1]), groups, C // groups, 1)
        return (shape[0], groups, C // groups, prod(shape[2:]))

    def mask_weights(self, mask, shape: tuple[int, ...], G: int | None = None, dtype=np.float64) -> np.ndarray:
        """A padding mask as weights over the view's (N, L): 1 for a valid position, 0 for
        padding, in ``dtype``.

        ``mask``: bool, x's shape without its channel axis, True = valid. Refused, naming
        the problem: a features-last norm with per-sample statistics (a mask would select
        whole rows), a channel (batch statistics) or a sample (per-sample statistics)
        without any valid position."""
        if self.features_last and self.across == "sample":
            raise ValueError(f"a mask needs statistics over positions; the {self.name} norm normalizes each "
                             "row over its features")
        mask = v.mask_array(mask, shape, -1 if self.features_last else 1)
        N, _, _, L = self.view(shape, G)
        valid = mask.reshape(N, L)
        if self.across == "batch" and not valid.any():
            raise ValueError("mask has no valid position: batch statistics need at least one")
        if self.across == "sample" and not valid.any(axis=1).all():
            n = int(np.flatnonzero(~valid.any(axis=1))[0])
            raise ValueError(f"mask has no valid position for sample {n}: its statistics need at least one")
        return valid.astype(dtype)

    def stats_shape(self, view: View) -> tuple[int, ...]:
        """Shape of mean / var / invstd: (C,) across the batch, (N, G) per sample."""
        N, G, K, _ = view
        return (G * K,) if self.across == "batch" else (N, G)

    def count(self, view: View) -> int:
        """Values behind each mean and variance."""
        N, _, K, L = view
        return N * L if self.across == "batch" else K * L


BATCH = NormSpec("batch", features_last=False, across="batch", running_stats=True)
LAYER = NormSpec("layer", features_last=True, across="sample")
GROUP = NormSpec("group", features_last=False, across="sample", groups="given")
INSTANCE = NormSpec("instance", features_last=False, across="sample", groups="channel")
RMS = NormSpec("rms", features_last=True, across="sample", centered=False)

SPECS = {s.name: s for s in (BATCH, LAYER, GROUP, INSTANCE, RMS)}


def from_code(code: str) -> NormSpec:
    """The spec a ``NormSpec.code`` string describes, or a built-in spec by name ('batch', ...)."""
    spec = SPECS.get(code)
    return spec if spec is not None else _decode(code)


@lru_cache(maxsize=256)
def _decode(code: str) -> NormSpec:
    parts = code.split("|")
    if len(parts) != 6:
        raise ValueError(f"unknown norm {code!r}: a name of {sorted(SPECS)} or a NormSpec.code")
    name, features_last, across, groups, centered, running_stats = parts
    return NormSpec(name, features_last == "1", across, groups, centered == "1", running_stats == "1")
