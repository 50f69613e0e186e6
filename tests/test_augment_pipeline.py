import argparse
import dataclasses
import io
import warnings

import numpy as np
import pytest
import timm
import torch

import seit.models  # noqa: F401  (registers the token ViTs)
from seit.augment import AugmentConfig, AugmentError, TokenAugment
from seit.augment import pipeline as augment_pipeline
from seit.augment.config import BatchSlice
from seit.config import add_dataclass_args, from_args
from seit.errors import ConfigError
from seit.interop import seit_flags

OFF = dict(synonym_prob=0.0, swap_prob=0.0, noise_prob=0.0, color_adapt_prob=0.0, cutmix=0.0, smoothing=0.0)


def make(config=None, codes=50, dim=4, classes=10, seed=0):
    codebook = torch.randn(codes, dim, generator=torch.Generator().manual_seed(99))
    return TokenAugment(config or AugmentConfig(), codebook, num_classes=classes, seed=seed)


def batch(n=8, grid=32, codes=50, classes=10, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, codes, (n, grid, grid), generator=g).to(torch.int16), torch.randint(
        0, classes, (n,), generator=g
    )


def test_defaults_are_seits_and_map_to_flags():
    cfg = AugmentConfig()
    assert (cfg.crop, cfg.crop_ratio, cfg.rrc_scale, cfg.hflip_prob) == ("rrc", 0.875, (0.08, 1.0), 0.0)
    assert (cfg.synonym_prob, cfg.synonym_token_prob, cfg.synonym_topk) == (0.25, 0.25, 5)
    assert (cfg.swap_prob, cfg.swap_scale) == (0.25, 0.25)
    assert (cfg.noise_prob, cfg.noise_scale, cfg.noise_std, cfg.color_adapt_prob) == (0.25, 1.0, 1.0, 0.125)
    assert (cfg.mixup, cfg.cutmix, cfg.mixup_mode, cfg.smoothing) == (0.0, 1.0, "batch", 0.1)
    assert cfg.crop_side(32, 32) == 28 and cfg.crop_side(16, 16) == 14 and cfg.crop_side(8, 8) == 7
    parser = argparse.ArgumentParser()
    add_dataclass_args(parser, AugmentConfig, seit_flags.aliases(seit_flags.TRAIN))  # SeiT's names too
    ns = parser.parse_args(["--eda-rc-prob", "0.1", "--rrc-scale", "0.35", "1", "--cutmix-minmax", "0.2", "0.8"])
    parsed = from_args(AugmentConfig, ns)
    assert parsed.synonym_prob == 0.1 and parsed.rrc_scale == (0.35, 1.0) and parsed.cutmix_minmax == (0.2, 0.8)


@pytest.mark.parametrize(
    "bad, flag",
    [
        (dict(noise_prob=1.5), "--noise-prob"),
        (dict(synonym_prob=0.7, swap_prob=0.5), "--synonym-prob"),
        (dict(noise_prob=0.9, color_adapt_prob=0.2), "--color-adapt-prob"),
        (dict(rrc_scale=(0.5, 0.1)), "--rrc-scale"),
        (dict(synonym_topk=0), "--synonym-topk"),
        (dict(rrc_scale=(0.08,)), "--rrc-scale takes two numbers"),  # e.g. SeiT's single-number --rrc-ratio
    ],
)
def test_bad_settings_name_the_flag(bad, flag):
    with pytest.raises(ConfigError, match=flag):
        AugmentConfig(**bad)
    with pytest.raises(AugmentError, match="--crop-size"):
        AugmentConfig(crop_size=40).crop_side(32, 32)


def test_train_gives_model_inputs_and_soft_targets():
    aug = make()
    ids, labels = batch(n=16)
    x, targets = aug.train(ids, labels)
    assert x.shape == (16, 4, 28, 28) and x.dtype == torch.float32 and torch.isfinite(x).all()
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert targets.shape == (16, 10)
    torch.testing.assert_close(targets.sum(1), torch.ones(16))
    assert targets.min() >= 0.1 / 10 - 1e-6  # label smoothing: every class keeps at least smoothing / C
    assert (targets.argmax(1) == labels).float().mean() >= 0.5  # CutMix keeps the larger share of the own label


def test_identity_settings_reproduce_the_plain_lookup():
    aug = make(AugmentConfig(crop="random", crop_size=32, **OFF))
    ids, labels = batch()
    x, targets = aug.train(ids, labels)
    torch.testing.assert_close(x, aug.codebook[ids.long()].permute(0, 3, 1, 2))
    torch.testing.assert_close(targets, torch.nn.functional.one_hot(labels, 10).float())


@pytest.mark.parametrize(
    "setting, rate",
    [
        (dict(synonym_prob=0.3), 0.3),  # a chosen sample has ~200 of 256 tokens redrawn: always visible
        (dict(swap_prob=0.4), 0.4 * 3 / 4),  # 16x16 grid: swap side int(U(0, 4)) is 0 a quarter of the time
        (dict(noise_prob=0.25), 0.25),
        (dict(color_adapt_prob=0.125), 0.125),
    ],
    ids=["synonyms", "swap", "noise", "color-adapt"],
)
def test_each_augmentation_touches_its_share_of_samples(setting, rate):
    n = 4000
    base = dict(crop="random", crop_size=16, **OFF)
    plain = make(AugmentConfig(**base), seed=5)
    augmented = make(AugmentConfig(**{**base, **setting}), seed=5)
    ids, labels = batch(n=n, grid=16)
    touched = (augmented.train(ids, labels)[0] != plain.train(ids, labels)[0]).flatten(1).any(1)
    assert abs(touched.float().mean().item() - rate) < 0.03


def test_color_ops_are_exclusive_and_adapt_uses_the_neighbour_sample():
    aug = make(AugmentConfig(crop="random", crop_size=16, **{**OFF, "color_adapt_prob": 1.0}))
    ids, labels = batch(n=7, grid=16)
    x, _ = aug.train(ids, labels)
    clean = aug.codebook[ids.long()].permute(0, 3, 1, 2)
    mates = clean[[1, 0, 3, 2, 5, 4, 6]]  # pairs (0, 1), (2, 3), ...; an odd batch's last sample is its own
    torch.testing.assert_close(x.mean((2, 3)), mates.mean((2, 3)), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.std((2, 3)), mates.std((2, 3)), atol=1e-4, rtol=1e-4)


def test_same_seed_same_stream_and_state_resumes_it():
    ids, labels = batch(n=8)
    a, b = make(seed=3), make(seed=3)
    for _ in range(2):
        xa, ta = a.train(ids, labels)
        xb, tb = b.train(ids, labels)
        torch.testing.assert_close(xa, xb)
        torch.testing.assert_close(ta, tb)
    assert not torch.equal(make(seed=4).train(ids, labels)[0], make(seed=3).train(ids, labels)[0])

    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    expected = a.train(ids, labels)
    resumed = make(seed=123)
    resumed.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True))
    got = resumed.train(ids, labels)
    torch.testing.assert_close(got[0], expected[0])
    torch.testing.assert_close(got[1], expected[1])

    foreign = dict(a.state_dict(), device_type="cuda")  # other generator format: warned, deterministic reseed
    other = make()
    message = "saved on cuda and is resumed on cpu: the random stream continues from a derived seed, not bit-ident"
    with pytest.warns(UserWarning, match=message) as warned:
        other.load_state_dict(foreign)
    assert warned[0].filename != augment_pipeline.__file__  # it names the caller's line, not the library's
    assert other.generator.initial_seed() == 1649334614  # sha256 of the saved state, little-endian, mod 2**31 - 1


def test_train_inputs_are_trains_inputs_without_labels_and_refuse_mixing():
    """What pre-training reads from unlabelled data: the same draws as train, for any (or no) class count."""
    ids, labels = batch(n=8)
    config = AugmentConfig(**dict(OFF, synonym_prob=0.3, swap_prob=0.3, noise_prob=0.3, color_adapt_prob=0.3))
    expected = make(config, seed=5).train(ids, labels)[0]
    torch.testing.assert_close(make(config, classes=0, seed=5).train_inputs(ids), expected)
    with pytest.raises(AugmentError, match="--mixup 0 --cutmix 0"):
        make(classes=0).train_inputs(ids)  # SeiT's default CutMix
    with pytest.raises(AugmentError, match=r"class ids in \[0, 0\)"):
        make(config, classes=0).train(ids, labels)


def test_mixing_leaves_numpy_global_rng_alone():
    np.random.seed(7)
    expected = np.random.rand()
    np.random.seed(7)
    make().train(*batch())
    assert np.random.rand() == expected


def test_eval_is_the_deterministic_centre_crop():
    aug = make()
    ids, _ = batch()
    x = aug.eval(ids)
    torch.testing.assert_close(x, aug.codebook[ids.long()[:, 2:30, 2:30]].permute(0, 3, 1, 2))
    torch.testing.assert_close(aug.eval(ids), x)


def test_bad_batches_get_clear_errors():
    aug = make()
    ids, labels = batch()
    with pytest.raises(AugmentError, match="codebook has 50 codes"):
        aug.train(ids + 50, labels)
    with pytest.raises(AugmentError, match="codebook has 50 codes"):
        aug.eval(ids - 1000)
    with pytest.raises(AugmentError, match="integer token ids"):
        aug.eval(ids.float())
    with pytest.raises(
        AugmentError, match=r"^token ids range 0\.\.50 but the codebook has 50 codes; .*\(check --codebook\)$"
    ):
        aug.eval(ids.index_fill(0, torch.tensor([2]), 50))  # one id past the last code
    with pytest.raises(AugmentError, match=r"class ids in \[0, 10\)"):
        aug.train(ids, labels + 10)
    with pytest.raises(AugmentError, match="even batch"):
        aug.train(ids[:7], labels[:7])
    with pytest.raises(AugmentError, match="synonym table has 3 rows"):
        TokenAugment(AugmentConfig(), torch.randn(50, 4), torch.zeros(3, 5, dtype=torch.long), num_classes=2)


@pytest.mark.parametrize(
    "change",
    [
        lambda y: y.view(-1, 1),
        lambda y: y.index_fill(0, torch.tensor([3]), -1),
        lambda y: y.index_fill(0, torch.tensor([3]), 10),
    ],
    ids=["shape [B, 1]", "one label -1", "one label = num_classes"],
)
def test_labels_of_another_shape_or_outside_the_classes_are_refused(change):
    ids, labels = batch()
    with pytest.raises(
        AugmentError, match=r"labels must be \[B\] class ids in \[0, 10\).*or a store with `seit store verify`\)$"
    ):
        make().train(ids, change(labels))


def test_the_augmented_stream_is_pinned():
    """Every draw on, numbers recorded: a change in what is drawn, in what order or range (the mixing seed, each
    sample's choices, which draw goes to which row) changes the stream a resumed run continues."""
    config = AugmentConfig(hflip_prob=0.5, synonym_prob=0.3, swap_prob=0.3, noise_prob=0.3, color_adapt_prob=0.3)
    x, targets = TokenAugment(config, make().codebook, num_classes=10).train(*batch(n=8))  # default seed: 0
    assert x.sum().item() == pytest.approx(-595.41589, rel=1e-5)
    assert x.abs().sum().item() == pytest.approx(25205.551, rel=1e-5)
    assert targets.max(1).values.sum().item() == pytest.approx(7.1146936, rel=1e-5)
    assert (targets * torch.arange(10)).sum().item() == pytest.approx(41.4, rel=1e-5)


def test_construction_checks_name_the_argument_and_build_only_the_tables_in_use():
    codebook = make().codebook
    with pytest.raises(AugmentError, match=r"^synonyms must be a torch tensor or numpy array, got list$"):
        TokenAugment(AugmentConfig(), codebook, [[0]], num_classes=10)
    with pytest.raises(AugmentError, match=r"^codebook must be float \[num_codes, dim\], got torch\.float32 \(50,\)$"):
        TokenAugment(AugmentConfig(), codebook[:, 0], num_classes=10)
    with pytest.raises(
        AugmentError, match=r"^num_classes must be >= 0 \(0: unlabelled data, train_inputs only\), got -1$"
    ):
        TokenAugment(AugmentConfig(), codebook, num_classes=-1)
    with pytest.raises(AugmentError, match=r"^ids must be a torch tensor or numpy array, got list$"):
        make().eval([[[0]]])
    assert TokenAugment(AugmentConfig(synonym_prob=0.0), codebook, num_classes=10).synonyms is None
    wide = TokenAugment(AugmentConfig(synonym_topk=12), codebook, num_classes=10, device="cpu")
    assert wide.synonyms.shape == (50, 12) and wide.device == torch.device("cpu")


@pytest.mark.parametrize("grid, side", [(8, 7), (16, 14)])
def test_any_grid_size_end_to_end_through_a_model(grid, side):
    aug = make(AugmentConfig(hflip_prob=0.5), dim=32)
    ids, labels = batch(n=4, grid=grid)
    model = timm.create_model("deit_tiny_token_32", embed_dim=32, depth=1, num_heads=2, img_size=side, num_classes=10)
    x, targets = aug.train(ids, labels)
    assert x.shape == (4, 32, side, side)
    loss = torch.sum(-targets * model(x).log_softmax(-1), dim=-1).mean()
    loss.backward()
    assert model.patch_embed.proj.weight.grad is not None
    assert model.eval()(aug.eval(ids)).shape == (4, 10)


def test_config_round_trips_through_a_dict():
    cfg = AugmentConfig(crop="random", cutmix_minmax=(0.2, 0.8))
    assert AugmentConfig(**dataclasses.asdict(cfg)) == cfg
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make(cfg)


def test_codebook_and_synonyms_as_numpy_arrays_work_as_tensors():
    """A store's codebook and synonym table are numpy arrays: TokenAugment takes them as they are."""
    codebook = np.random.default_rng(0).standard_normal((50, 4)).astype(np.float32)
    synonyms = np.argsort(-codebook @ codebook.T, axis=1)[:, :5].astype(np.int32)
    ids, labels = batch()
    streams = [
        TokenAugment(AugmentConfig(), cb, syn, num_classes=10, seed=3).train(ids, labels)
        for cb, syn in ((codebook, synonyms), (torch.from_numpy(codebook), torch.from_numpy(synonyms)))
    ]
    torch.testing.assert_close(streams[0], streams[1])
    again = TokenAugment(AugmentConfig(), codebook, synonyms, num_classes=10, seed=3).train(ids.numpy(), labels.numpy())
    torch.testing.assert_close(again, streams[0])  # numpy batches too (TokenStore.get_batch)
    with pytest.raises(AugmentError, match="codebook must be a torch tensor or numpy array, got list"):
        TokenAugment(AugmentConfig(), codebook.tolist(), num_classes=10)
    with pytest.raises(AugmentError, match="synonyms must be int"):
        TokenAugment(AugmentConfig(), codebook, codebook, num_classes=10)


@pytest.mark.parametrize("crop", ["rrc", "random"])
def test_parts_of_a_global_batch_draw_what_the_whole_batch_draws(crop):
    """Every augmentation on: rows 0:4 and 4:8 augmented apart (two processes, seeded alike) equal the batch
    of 8 augmented at once; and two parts given the same samples draw different augmentations."""
    config = AugmentConfig(crop=crop, hflip_prob=0.5, synonym_prob=0.4, swap_prob=0.4, noise_prob=0.4)
    config.color_adapt_prob = 0.4
    ids, labels = batch(n=8)
    whole = make(config, seed=11).train(ids, labels)
    parts = [make(config, seed=11).train(ids[a : a + 4], labels[a : a + 4], BatchSlice(a, 4, 8)) for a in (0, 4)]
    torch.testing.assert_close(torch.cat([p[0] for p in parts]), whole[0], rtol=0, atol=0)
    torch.testing.assert_close(torch.cat([p[1] for p in parts]), whole[1], rtol=0, atol=0)
    first, second = (make(config, seed=11).train(ids[:4], labels[:4], BatchSlice(a, 4, 8))[0] for a in (0, 4))
    assert all(not torch.allclose(a, b) for a, b in zip(first, second, strict=True))
    with pytest.raises(AugmentError, match="batch of 4 samples given as rows 0:2"):
        make(config).train(ids[:4], labels[:4], BatchSlice(0, 2, 8))
