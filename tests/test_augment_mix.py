import numpy as np
import pytest
import torch
from timm.data import Mixup

from seit.augment import AugmentConfig, AugmentError
from seit.augment.config import BatchSlice
from seit.augment.mix import SoftTargets, partners

# timm pairs position k with B-1-k; laid out in this order, our pairs (2k, 2k+1) are timm's (k, B-1-k)
AS_TIMM = [0, 2, 4, 6, 7, 5, 3, 1]


@pytest.mark.parametrize("mixup, cutmix", [(0.0, 1.0), (0.8, 0.0), (0.8, 1.0)])
def test_per_batch_mixing_is_timms_with_neighbours_as_partners(mixup, cutmix):
    options = dict(mixup_alpha=mixup, cutmix_alpha=cutmix, label_smoothing=0.1, num_classes=7)
    ours = SoftTargets(AugmentConfig(mixup=mixup, cutmix=cutmix, smoothing=0.1), num_classes=7)
    x = torch.randn(8, 3, 12, 12)
    labels = torch.arange(8) % 7
    changed = 0
    for seed in range(20):
        np.random.seed(seed)
        theirs, their_targets = Mixup(**options)(x[AS_TIMM].clone(), labels[AS_TIMM])
        mixed, targets = ours(x.clone(), labels, seed)
        torch.testing.assert_close(mixed[AS_TIMM], theirs, rtol=0, atol=0)
        torch.testing.assert_close(targets[AS_TIMM], their_targets, rtol=1e-6, atol=1e-7)
        changed += not torch.equal(mixed, x)
    assert changed >= 15  # the draws really mixed


@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
@pytest.mark.parametrize("mixup, cutmix", [(0.0, 1.0), (0.8, 1.0)])
def test_parts_of_a_global_batch_mix_as_the_whole_batch(mode, mixup, cutmix):
    """Rows 0:4 and 4:8 mixed apart (two processes) equal the batch of 8 mixed at once (one process)."""
    targets = SoftTargets(AugmentConfig(mixup=mixup, cutmix=cutmix, mixup_mode=mode), num_classes=5)
    x, labels = torch.randn(8, 2, 10, 10), torch.arange(8) % 5
    for seed in range(6):
        whole, whole_targets = targets(x.clone(), labels, seed)
        parts = [targets(x[a : a + 4].clone(), labels[a : a + 4], seed, BatchSlice(a, 4, 8)) for a in (0, 4)]
        torch.testing.assert_close(torch.cat([p[0] for p in parts]), whole, rtol=0, atol=0)
        torch.testing.assert_close(torch.cat([p[1] for p in parts]), whole_targets, rtol=0, atol=0)
    # per-sample modes draw per sample (pair): rows of one part do not all share one lam
    if mode != "batch":
        lams = {round(float(t.max()), 6) for t in targets(x.clone(), labels, 1)[1]}
        assert len(lams) > 1


def test_partners_are_neighbours_inside_the_part():
    assert partners(BatchSlice.whole(5)).tolist() == [1, 0, 3, 2, 4]
    assert partners(BatchSlice(2, 4, 8)).tolist() == [1, 0, 3, 2]  # global 2..5: pairs (2, 3), (4, 5)
    assert partners(BatchSlice(3, 3, 9)).tolist() == [0, 2, 1]  # global 3's mate 2 is outside: itself


def test_mixing_needs_even_parts():
    targets = SoftTargets(AugmentConfig(), num_classes=5)
    x, labels = torch.randn(4, 2, 6, 6), torch.arange(4)
    with pytest.raises(AugmentError, match="needs an even batch"):
        targets(x[:3], labels[:3], 0)
    with pytest.raises(AugmentError, match="rows 1:5 of 8"):
        targets(x, labels, 0, BatchSlice(1, 4, 8))
    with pytest.raises(AugmentError, match="outside a global batch"):
        BatchSlice(6, 4, 8)


# Found by the mutation pass (scripts/mutation.sh, docs/mutation.md).
def _lams(targets, labels):
    """Each row's own-label weight: lam, with smoothing 0 and partners of other labels."""
    return targets[torch.arange(len(labels)), labels]


@pytest.mark.parametrize("mode", ["pair", "elem"])
def test_per_sample_mixup_blends_each_row_with_its_partner_by_its_own_lam(mode):
    config = AugmentConfig(mixup=0.8, cutmix=0.0, mixup_mode=mode, mixup_prob=0.5, smoothing=0.0)
    x, labels = torch.randn(64, 2, 4, 4), torch.arange(64) % 2  # partners (2k, 2k+1) have other labels
    mixed, targets = SoftTargets(config, num_classes=2)(x.clone(), labels, 3)
    lam, mate = _lams(targets, labels), partners(BatchSlice.whole(64))
    blend = lam.view(-1, 1, 1, 1) * x + (1 - lam.view(-1, 1, 1, 1)) * x[mate]
    torch.testing.assert_close(mixed, blend, rtol=1e-5, atol=1e-6)
    assert 16 < (lam < 1).sum() < 48  # --mixup-prob 0.5: about half the draws mix, wherever they fall
    assert torch.equal(lam == lam[mate], torch.ones(64, dtype=torch.bool)) == (mode == "pair")


def test_mixing_settings_reach_the_draws():
    x, labels = torch.randn(8, 1, 10, 10), torch.arange(8) % 2
    mixed_batches = 0
    for seed in range(40):  # --mixup-prob 0.5: about half the batches are left alone
        config = AugmentConfig(mixup=0.8, cutmix=1.0, mixup_prob=0.5, mixup_switch_prob=1.0, smoothing=0.0)
        mixed, targets = SoftTargets(config, num_classes=2)(x.clone(), labels, seed)
        lam = float(_lams(targets, labels)[0])
        changed = (mixed != x).float().mean().item()
        if lam < 1:  # switch prob 1: always CutMix, lam is exactly the share of pixels kept
            mixed_batches += 1
            assert changed == pytest.approx(1 - lam)
    assert 8 < mixed_batches < 32
    minmax = AugmentConfig(cutmix_minmax=(0.2, 0.3), smoothing=0.0)  # box sides 20%..30% of the image
    for seed in range(10):
        _, targets = SoftTargets(minmax, num_classes=2)(x.clone(), labels, seed)
        assert 1 - 0.3**2 - 0.01 <= float(_lams(targets, labels)[0]) <= 1 - 0.2**2 + 0.01


def test_without_mixing_targets_are_smoothed_labels_for_any_batch():
    config = AugmentConfig(cutmix=0.0, mixup=0.0, smoothing=0.2)
    x = torch.randn(3, 1, 4, 4)
    out, targets = SoftTargets(config, num_classes=2)(x.clone(), torch.tensor([0, 1, 1]), 0)
    assert torch.equal(out, x)
    torch.testing.assert_close(targets, torch.tensor([[0.9, 0.1], [0.1, 0.9], [0.1, 0.9]]))
    with pytest.raises(AugmentError, match=r"got 3 \(rows 0:3 of 3\).*--cutmix 0 --mixup 0$"):
        SoftTargets(AugmentConfig(), num_classes=2)(x, torch.tensor([0, 1, 1]), 0)


def test_per_sample_cutmix_draws_are_pinned():
    """A resumed run re-draws from (seed, step): unmixed samples (--mixup-prob) draw no box, in any version."""
    config = AugmentConfig(mixup_mode="elem", mixup_prob=0.5, smoothing=0.0)
    labels = torch.arange(8) % 2
    _, targets = SoftTargets(config, num_classes=2)(torch.zeros(8, 1, 10, 10), labels, 3)
    assert [round(float(v), 4) for v in _lams(targets, labels)] == [0.58, 0.84, 1.0, 1.0, 0.85, 0.19, 0.75, 1.0]
