"""``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 real images, offline).

Resized to ``image_size`` and repeated to 3 channels. A fixed, seeded, class-stratified split
puts every fifth image of each class into the evaluation set (355 images), the rest (1,442) into
training; ``train_size``/``eval_size`` larger than that are capped to what exists.
"""

from __future__ import annotations

import numpy as np
import torch

from er_core.data.bundle import make_bundle


def load_digits(*, root: str = "", image_size: int = 32, train_size: int = 1442, eval_size: int = 355,
                seed: int = 0):
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    images = torch.from_numpy((digits.images * (255.0 / 16.0)).round().astype(np.uint8))
    images = images.unsqueeze(1).repeat(1, 3, 1, 1)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    order = torch.randperm(labels.numel(), generator=torch.Generator().manual_seed(seed))
    images, labels = images[order], labels[order]
    rank = torch.zeros_like(labels)
    for cls in range(10):
        rows = (labels == cls).nonzero().flatten()
        rank[rows] = torch.arange(rows.numel())
    to_eval = rank % 5 == 4
    return make_bundle("digits", 10, images[~to_eval], labels[~to_eval], images[to_eval], labels[to_eval],
                       image_size=image_size, train_size=train_size, eval_size=eval_size)
