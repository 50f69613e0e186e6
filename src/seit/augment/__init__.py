"""Token augmentation on the training device: batched, per-sample random, reproducible from one generator.

``TokenAugment(config, codebook, synonyms, num_classes=C)`` turns DataLoader batches of ids [B, H, W] into
model inputs [B, D, m, m] with soft targets; the submodules hold the individual operations.
"""

from seit.augment.config import AugmentConfig, AugmentError
from seit.augment.pipeline import TokenAugment
from seit.augment.tables import synonyms_from_codebook

__all__ = ["AugmentConfig", "AugmentError", "TokenAugment", "synonyms_from_codebook"]
