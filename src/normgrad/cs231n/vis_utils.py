"""The course's ``vis_utils``: tile images into one grid for plotting."""

from __future__ import annotations

from math import ceil, sqrt

import numpy as np


def visualize_grid(Xs, ubound=255.0, padding=1):
    """Images Xs (N, H, W, C) tiled into a square grid, each scaled to [0, ubound]."""
    N, H, W, C = Xs.shape
    side = int(ceil(sqrt(N)))
    grid = np.zeros((side * (H + padding) - padding, side * (W + padding) - padding, C))
    for i in range(N):
        r, c = divmod(i, side)
        img = Xs[i]
        low, high = np.min(img), np.max(img)
        top, left = r * (H + padding), c * (W + padding)
        grid[top:top + H, left:left + W] = ubound * (img - low) / (high - low) if high > low else 0
    return grid


def vis_grid(Xs):
    """Images Xs (N, H, W, C) in a square grid with one pixel of padding, values as they are."""
    return visualize_grid_of(list(Xs), int(ceil(sqrt(len(Xs)))))


def vis_nn(rows):
    """A grid from a list of rows, each a list of (H, W, C) images of one size."""
    return visualize_grid_of([img for row in rows for img in row], len(rows[0]))


def visualize_grid_of(images, columns):
    H, W, C = images[0].shape
    rows = int(ceil(len(images) / columns))
    grid = np.zeros((rows * (H + 1) - 1, columns * (W + 1) - 1, C))
    for i, img in enumerate(images):
        r, c = divmod(i, columns)
        grid[r * (H + 1):r * (H + 1) + H, c * (W + 1):c * (W + 1) + W] = img
    grid -= grid.min()
    return grid / grid.max() if grid.max() > 0 else grid


__all__ = ["visualize_grid", "vis_grid", "vis_nn"]
