"""The pixel baseline crops and flips as the token path does: one TrainConfig, one distribution.

Both paths get an input whose value is its own coordinate (a ramp image; ids whose code vector is the
token's (x, y)), so the slope of a model input gives back the crop box it was cut from: width and height
as fractions of the grid or image, and a negative x slope for a flipped crop. Seeds are fixed; the
tolerances are many standard errors wide.
"""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from seit.augment import AugmentConfig, TokenAugment
from seit.augment.crop import sample_train_crops
from seit.engine.config import TrainConfig
from seit.engine.pipeline import PixelPipeline
from seit.engine.pixels import IMAGENET_MEAN, IMAGENET_STD, PixelDataset, normalise, train_crops
from seit.errors import SeitError
from seit.utils.dist import DistInfo

GRID = 32  # token grid (SeiT's, cropped to 28)
IMAGE, PIXELS = 64, 32  # ramp image and pixel model input
DRAWS = 800
# only the geometry: no Token-EDA, noise, colour or mixing, which would blur the ramps
PLAIN = dict(synonym_prob=0.0, swap_prob=0.0, noise_prob=0.0, color_adapt_prob=0.0, cutmix=0.0, smoothing=0.0)


def boxes_from_ramps(x: torch.Tensor, y: torch.Tensor, side: int, extent: int, step: float) -> np.ndarray:
    """[N, side, side] coordinate maps (value = step * coordinate) -> [N, 3]: width, height fractions, flipped."""
    lo, hi = side // 4, 3 * side // 4  # interior rows/columns: resampling a ramp is exact there
    slope_x = (x[:, lo:hi, hi] - x[:, lo:hi, lo]).mean(1) / (hi - lo) / step
    slope_y = (y[:, hi, lo:hi] - y[:, lo, lo:hi]).mean(1) / (hi - lo) / step
    width, height = slope_x.abs() * side / extent, slope_y * side / extent
    return torch.stack([width, height, (slope_x < 0).double()], 1).numpy()


def token_boxes(augment: AugmentConfig) -> np.ndarray:
    yy, xx = torch.meshgrid(torch.arange(GRID), torch.arange(GRID), indexing="ij")
    codebook = torch.stack([xx.flatten(), yy.flatten()], 1).float()  # code i = (x, y) of token i
    ids = torch.arange(GRID * GRID).view(1, GRID, GRID).expand(DRAWS, -1, -1)
    aug = TokenAugment(augment, codebook, num_classes=2, seed=0)
    x, _ = aug.train(ids, torch.zeros(DRAWS, dtype=torch.long))
    return boxes_from_ramps(x[:, 0].double(), x[:, 1].double(), x.shape[-1], GRID, 1.0)


@pytest.fixture(scope="module")
def ramp_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("ramps")
    yy, xx = np.meshgrid(np.arange(IMAGE), np.arange(IMAGE), indexing="ij")
    rgb = np.stack([xx * 4, yy * 4, np.zeros_like(xx)], -1).astype(np.uint8)
    for name in ("ramp", "ramp-too"):  # two classes, one image each
        (root / name).mkdir()
        Image.fromarray(rgb).save(root / name / "ramp.png")
    return root


def pixel_boxes(folder, augment: AugmentConfig, cache_bytes: int = 1 << 20) -> np.ndarray:
    dataset = PixelDataset(str(folder), PIXELS, augment=augment, cache_bytes=cache_bytes)
    torch.manual_seed(0)
    crops = torch.stack([crop for crop, _ in dataset.__getitems__([0] * DRAWS)]).double()  # one batch, as trained
    return boxes_from_ramps(crops[:, 0], crops[:, 1], PIXELS, IMAGE, 4.0)


def summary(boxes: np.ndarray) -> dict[str, float]:
    area, log_aspect = boxes[:, 0] * boxes[:, 1], np.log(boxes[:, 0] / boxes[:, 1])
    stats = {f"area_q{q}": np.quantile(area, q / 100) for q in (10, 50, 90)}
    stats |= {f"log_aspect_q{q}": np.quantile(log_aspect, q / 100) for q in (10, 50, 90)}
    return stats | {"flip_rate": boxes[:, 2].mean()}


def test_pixel_and_token_crops_follow_one_distribution(ramp_folder):
    """SeiT's token setting (crops of 35-100% area, flip 0.5): the pixel path must draw the same crops."""
    augment = AugmentConfig(**PLAIN, rrc_scale=(0.35, 1.0), hflip_prob=0.5)
    tokens, pixels = summary(token_boxes(augment)), summary(pixel_boxes(ramp_folder, augment))
    for name, value in tokens.items():
        assert pixels[name] == pytest.approx(value, abs=0.06), name
    assert tokens["area_q10"] > 0.35 and pixels["flip_rate"] == pytest.approx(0.5, abs=0.06)


@pytest.mark.parametrize(
    "setting, check",
    [
        ({"rrc_scale": (0.5, 1.0)}, lambda b: (b[:, 0] * b[:, 1] > 0.47).all()),
        ({"rrc_scale": (0.08, 0.2)}, lambda b: (b[:, 0] * b[:, 1] < 0.23).all()),
        ({"rrc_aspect": (1.0, 1.0)}, lambda b: (np.abs(np.log(b[:, 0] / b[:, 1])) < 0.07).all()),
        ({"rrc_aspect": (1.5, 2.0)}, lambda b: (b[:, 0] / b[:, 1] > 1.4).mean() > 0.9),
        ({"hflip_prob": 0.0}, lambda b: (b[:, 2] == 0).all()),
        ({"hflip_prob": 1.0}, lambda b: (b[:, 2] == 1).all()),
        ({"crop": "random", "crop_ratio": 0.5}, lambda b: (np.abs(b[:, :2] - 0.5) < 0.03).all()),
    ],
    ids=["scale-min", "scale-max", "aspect-square", "aspect-wide", "no-flip", "always-flip", "random-crop"],
)
def test_each_crop_setting_reaches_the_pixel_path(ramp_folder, setting, check):
    augment = AugmentConfig(**PLAIN, **setting)
    assert check(pixel_boxes(ramp_folder, augment))
    assert check(token_boxes(augment))  # the same rule holds for the token path


def test_pixel_pipeline_applies_the_configured_crops_mixing_and_smoothing(ramp_folder, caplog):
    cfg = TrainConfig()
    cfg.data.images, cfg.data.image_size = str(ramp_folder), PIXELS
    cfg.augment = dataclasses.replace(cfg.augment, hflip_prob=1.0, smoothing=0.2, cutmix=0.0, mixup=0.0)
    with caplog.at_level("INFO", logger="seit"):
        pipe = PixelPipeline(cfg, DistInfo(), torch.device("cpu"))
    assert pipe.train_set.augment is cfg.augment and "Token-EDA, Emb-Noise and ColorAdapt" in caplog.text
    _, targets = pipe.train_batch(torch.zeros(2, 3, PIXELS, PIXELS, dtype=torch.uint8), torch.tensor([0, 0]))
    assert targets[0].tolist() == pytest.approx([0.9, 0.1])  # label smoothing 0.2 over two classes
    cfg.augment = dataclasses.replace(cfg.augment, cutmix=1.0)
    pipe = PixelPipeline(cfg, DistInfo(), torch.device("cpu"))
    pipe.reseed(3)
    images = torch.stack([torch.zeros(3, PIXELS, PIXELS), torch.full((3, PIXELS, PIXELS), 255.0)]).byte()
    x, targets = pipe.train_batch(images, torch.tensor([0, 1]))
    assert 0 < targets[0, 1] < 1 and x[0].std() > 0  # CutMix pasted part of the other image and label


def test_crop_size_is_refused_for_pixels(ramp_folder):
    cfg = TrainConfig()
    cfg.data.images = str(ramp_folder)
    cfg.augment = dataclasses.replace(cfg.augment, crop_size=24)
    with pytest.raises(SeitError, match=r"--crop-size is the token crop.s side in tokens.*--image-size"):
        PixelPipeline(cfg, DistInfo(), torch.device("cpu"))


@pytest.fixture(scope="module")
def mixed_sizes(tmp_path_factory):
    """Six noise images of three sizes, two classes."""
    root, rng = tmp_path_factory.mktemp("mixed"), np.random.default_rng(0)
    for i, (h, w) in enumerate([(40, 64), (64, 40), (50, 50)] * 2):
        (root / f"c{i % 2}").mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / f"c{i % 2}" / f"{i}.png")
    return root


def batches(dataset: PixelDataset, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.stack([crop for crop, _ in dataset.__getitems__(list(range(len(dataset))) * 3)])


def test_images_decoded_into_memory_give_the_batches_of_decoding_each_time(mixed_sizes):
    augment = AugmentConfig(**PLAIN, rrc_scale=(0.35, 1.0), hflip_prob=0.5)
    cached = PixelDataset(str(mixed_sizes), PIXELS, augment=augment, cache_bytes=1 << 20)
    streamed = PixelDataset(str(mixed_sizes), PIXELS, augment=augment)
    assert cached.cached and not streamed.cached
    assert torch.equal(batches(cached, 1), batches(streamed, 1))
    assert not torch.equal(batches(cached, 1), batches(cached, 2))  # the crops are drawn, not fixed
    evals = [PixelDataset(str(mixed_sizes), PIXELS, cache_bytes=c) for c in (1 << 20, 0)]
    assert torch.equal(batches(evals[0], 0), batches(evals[1], 0))


def test_a_folder_past_the_cache_limit_is_decoded_on_every_fetch(mixed_sizes, caplog):
    decoded = (40 * 64 * 2 + 50 * 50) * 3 * 2  # bytes of the six images as RGB
    with caplog.at_level("INFO", logger="seit"):
        assert not PixelDataset(str(mixed_sizes), PIXELS, cache_bytes=decoded - 1).cached
    assert "decoding them every epoch" in caplog.text
    assert PixelDataset(str(mixed_sizes), PIXELS, cache_bytes=decoded).cached

    cfg = TrainConfig()
    cfg.data.images, cfg.data.image_size, cfg.optim.batch_size = str(mixed_sizes), PIXELS, 2
    for cache_mb, workers in ((1, 0), (0, 2)):  # in memory: no decoding workers on CPU; else two
        cfg.data.pixel_cache_mb = cache_mb
        pipe = PixelPipeline(cfg, DistInfo(), torch.device("cpu"))
        assert pipe.num_workers == workers
    images, labels = next(iter(pipe._loader(pipe.train_set, [[0, 3], [1, 2]])))  # decoded in workers
    assert images.shape == (2, 3, PIXELS, PIXELS) and images.dtype == torch.uint8 and labels.tolist() == [0, 1]


# ---- exact geometry and values: the pixel baseline's inputs against torchvision's own transforms -----------
def test_normalise_is_deit_s_mean_and_std_on_0_1_pixels():
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 3, 5, 7), dtype=np.uint8))
    got = normalise(images, torch.device("cpu"))
    want = v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)(images.float() / 255)  # ToTensor, then Normalize (timm's DeiT)
    assert got.dtype == torch.float32 and got.shape == images.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_training_crops_are_the_sampled_boxes_resized_bicubic_with_antialias(mixed_sizes):
    """Images of other heights and widths: each crop is exactly its box (rows from the height, columns from the
    width) resized with bicubic antialiasing, flipped where the sampler says; uint8 as decoded."""
    dataset = PixelDataset(str(mixed_sizes), 24)
    images = [dataset.image(i) for i in range(len(dataset))]
    augment = AugmentConfig(**PLAIN, rrc_scale=(0.35, 1.0), hflip_prob=0.5)
    torch.manual_seed(4)
    got = train_crops(images, 24, augment)
    torch.manual_seed(4)
    heights, widths = torch.tensor([i.shape[1] for i in images]), torch.tensor([i.shape[2] for i in images])
    boxes, flip = sample_train_crops(augment, len(images), heights, widths, None, torch.device("cpu"))
    assert boxes[:, 2].max() > 40 or boxes[:, 3].max() > 40  # some crops are downscaled: antialiasing shows
    for crop, image, (top, left, h, w), flipped in zip(got, images, boxes.tolist(), flip.tolist(), strict=True):
        want = v2.functional.resized_crop(
            image, top, left, h, w, [24, 24], interpolation=v2.InterpolationMode.BICUBIC, antialias=True
        )
        assert torch.equal(crop, want.flip(-1) if flipped else want)
    assert got.dtype == torch.uint8 and 0 < flip.sum() < len(images)


def test_eval_crops_resize_the_shorter_side_to_size_over_0_875_then_centre_crop(mixed_sizes):
    dataset = PixelDataset(str(mixed_sizes), 24)
    for i in range(len(dataset)):
        crop, label = dataset[i]
        image = dataset.image(i)
        resized = v2.functional.resize(image, [27], interpolation=v2.InterpolationMode.BICUBIC, antialias=True)
        assert torch.equal(crop, v2.functional.center_crop(resized, [24, 24])), i  # int(24 / 0.875) = 27
        assert label == int(dataset.labels[i]) and dataset.__getitems__([i])[0][1] == label


def test_cached_images_need_their_files_no_more(tmp_path, mixed_sizes):
    import shutil

    folder = tmp_path / "images"
    shutil.copytree(mixed_sizes, folder)
    cached = PixelDataset(str(folder), 24, cache_bytes=1 << 20)
    want = cached.__getitems__([0, 5])
    shutil.rmtree(folder)
    got = cached.__getitems__([0, 5])
    assert all(torch.equal(a[0], b[0]) and a[1] == b[1] for a, b in zip(got, want, strict=True))


def test_cache_messages_name_the_folder_and_the_sizes(tmp_path, caplog):
    rng = np.random.default_rng(1)
    for i, side in enumerate((1024, 1024, 600)):
        (tmp_path / f"c{i % 2}").mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(tmp_path / f"c{i % 2}" / f"{i}.png")
    with caplog.at_level("INFO", logger="seit"):
        assert not PixelDataset(str(tmp_path), 8, cache_bytes=0).cached
        assert caplog.text == ""  # no cache asked for: nothing decoded, nothing said
        assert not PixelDataset(str(tmp_path), 8, cache_bytes=3 << 20).cached
        assert not PixelDataset(str(tmp_path), 8, cache_bytes=1).cached
        assert PixelDataset(str(tmp_path), 8, cache_bytes=8 << 20).cached
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path}: decoded images take over 3.0 MiB (--pixel-cache-mb): decoding them every epoch instead",
        f"{tmp_path}: decoded images take over 0.0 MiB (--pixel-cache-mb): decoding them every epoch instead",
        f"{tmp_path}: 3 images decoded into memory (7 MiB)",  # 2 x 3 MiB + 1.03 MiB
    ]


def test_folders_the_pixel_baseline_cannot_use_are_refused_by_name(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SeitError, match=rf"^{tmp_path / 'empty'}: no images found \(extensions: .bmp "):
        PixelDataset(str(tmp_path / "empty"), 8)
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (8, 8)).save(flat / "a.png")
    (tmp_path / "list.txt").write_text("a.png\n")  # a list file without labels
    with pytest.raises(SeitError, match=r"the pixel baseline needs labelled images \(an ImageFolder tree or a list"):
        PixelDataset(str(tmp_path / "list.txt"), 8)
    (tmp_path / "bad" / "c").mkdir(parents=True)
    (tmp_path / "bad" / "c" / "x.png").write_bytes(b"not a png")
    dataset = PixelDataset(str(tmp_path / "bad"), 8)
    with pytest.raises(SeitError, match=r"x\.png: cannot be read \(.*\); remove it from the training folder$"):
        dataset[0]
