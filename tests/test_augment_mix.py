import numpy as np
import pytest
import torch
from timm.data import Mixup

from seit.augment.mix import BoxCopyMixup


@pytest.mark.parametrize("mixup, cutmix", [(0.0, 1.0), (0.8, 0.0), (0.8, 1.0)])
def test_box_copy_mixup_mixes_exactly_as_timm(mixup, cutmix):
    options = dict(mixup_alpha=mixup, cutmix_alpha=cutmix, label_smoothing=0.1, num_classes=7)
    x = torch.randn(8, 3, 12, 12)
    labels = torch.arange(8) % 7
    changed = 0
    for seed in range(20):
        np.random.seed(seed)
        theirs, their_targets = Mixup(**options)(x.clone(), labels)
        np.random.seed(seed)
        ours, our_targets = BoxCopyMixup(**options)(x.clone(), labels)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
        torch.testing.assert_close(our_targets, their_targets, rtol=0, atol=0)
        changed += not torch.equal(ours, x)
    assert changed >= 15  # the draws really mixed
