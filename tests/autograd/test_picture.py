"""The graph picture fits a page (long graphs wrap into bands) and shows inline in notebooks."""

from __future__ import annotations

import numpy as np
from matplotlib.image import imread

from normgrad import autograd as ag
from normgrad.autograd.graph import BAND_COLUMNS, layout, trace, wrap


def _bn_graph():
    rng = np.random.default_rng(0)
    out = ag.batchnorm(ag.Tensor(rng.normal(3, 2, (4, 3)), "x"), ag.Tensor(np.ones(3), "gamma"),
                       ag.Tensor(np.zeros(3), "beta"))
    out.backward(rng.normal(size=(4, 3)))
    return out


def test_batch_norm_graph_wraps_into_bands_that_fit_a_page(tmp_path):
    out = _bn_graph()
    nodes, edges = trace(out)
    flat, folded = layout(nodes, edges), wrap(layout(nodes, edges))
    assert max(c for c, _ in flat.values()) - min(c for c, _ in flat.values()) + 1 > BAND_COLUMNS
    assert max(c for c, _ in folded.values()) < BAND_COLUMNS  # no band wider than BAND_COLUMNS
    assert len({int(r) for _, r in folded.values()}) >= 4  # three bands, one or two rows each
    # every node keeps its own place: no two boxes on one spot
    assert len(set(folded.values())) == len(nodes)
    picture = imread(ag.render(out, tmp_path / "bn.png"))
    assert picture.shape[1] <= 1600 and picture.shape[0] <= 1.2 * picture.shape[1], picture.shape


def test_a_tensor_shows_as_its_graph_in_a_notebook():
    svg = _bn_graph()._repr_svg_()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    for name in ("x", "mu", "xmu", "ivar", "xhat", "out"):
        assert f'id="node-{name}"' in svg
