"""Trivial-statistic baselines: how far a classifier gets on global colour statistics alone.

The demo dataset is meant to need shape and texture; if these baselines come close to a trained
model, the dataset leaks its label through colour and the token-vs-pixel comparison means little.
"""

from __future__ import annotations

import numpy as np


def mean_colour(images: np.ndarray) -> np.ndarray:
    """[N, H, W, 3] uint8 -> [N, 3] mean RGB in [0, 1]."""
    return images.reshape(len(images), -1, 3).mean(axis=1) / 255.0


def colour_histogram(images: np.ndarray, bins: int = 4) -> np.ndarray:
    """[N, H, W, 3] uint8 -> [N, bins**3] joint RGB histogram, normalised to sum 1 per image."""
    q = (images.reshape(len(images), -1, 3).astype(np.int64) * bins) // 256
    cell = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
    hist = np.stack([np.bincount(c, minlength=bins**3) for c in cell]).astype(np.float64)
    return hist / hist.sum(axis=1, keepdims=True)


def nearest_centroid_accuracy(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray) -> float:
    """Fit one centroid per class on ``train_x``; the fraction of ``val_x`` nearest (L2) to its own class."""
    classes = np.unique(train_y)
    centroids = np.stack([train_x[train_y == c].mean(axis=0) for c in classes])
    dist = ((val_x[:, None, :] - centroids[None]) ** 2).sum(axis=-1)
    return float((classes[dist.argmin(axis=1)] == val_y).mean())
