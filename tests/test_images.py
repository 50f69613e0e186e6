import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from seit.images import (
    UNLABELED,
    ImageDataset,
    ImageListError,
    ImageSkipped,
    list_images,
    load_image,
    open_rgb,
    resize,
    shard,
)
from tokenizer_testdata import PIXEL_LIMIT, write_image_folder, write_problem_images


def test_image_folder_tree_sorted_with_class_labels(tmp_path):
    write_image_folder(tmp_path, 6, 16, classes=3)
    (tmp_path / "class1" / "deeper").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "class1" / "deeper" / "x.JPG")
    (tmp_path / "class2" / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / ".hidden" / "y.png")
    listing = list_images(tmp_path)
    assert listing.classes == ["class0", "class1", "class2"]
    keys = [s.key for s in listing.samples]
    assert keys == sorted(keys)
    assert "class1/deeper/x.JPG" in keys and not any(".hidden" in k for k in keys)
    assert {s.key.split("/")[0]: s.label for s in listing.samples} == {"class0": 0, "class1": 1, "class2": 2}
    assert all(s.path.endswith(s.key) for s in listing.samples)


def test_flat_folder_is_unlabelled_and_recursive(tmp_path):
    write_image_folder(tmp_path, 3, 16)
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "sub" / "z.png")
    listing = list_images(tmp_path)
    assert [s.key for s in listing.samples] == ["img000.png", "img001.png", "img002.png", "sub/z.png"]
    assert {s.label for s in listing.samples} == {UNLABELED} and listing.classes == []


def test_list_file_paths_labels_and_errors(tmp_path):
    write_image_folder(tmp_path / "imgs", 3, 16)
    lst = tmp_path / "train.txt"
    lst.write_text("# comment\nimgs/img002.png 7\n\nimgs/img000.png 3\nimgs/img001.png\n")
    listing = list_images(lst)
    assert [(s.key, s.label) for s in listing.samples] == [
        ("imgs/img000.png", 3),
        ("imgs/img001.png", UNLABELED),
        ("imgs/img002.png", 7),
    ]
    assert listing.samples[0].path == str(tmp_path / "imgs" / "img000.png")
    lst.write_text("imgs/img000.png 1\nimgs/img000.png 2\n")
    with pytest.raises(ImageListError, match=r"train\.txt:2: .*listed twice"):
        list_images(lst)
    with pytest.raises(ImageListError, match="no such folder"):
        list_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageListError, match="no images found"):
        list_images(tmp_path / "empty")


def test_shards_are_contiguous_disjoint_and_cover_everything():
    items = list(range(11))
    parts = [shard(items, r, 3) for r in range(3)]
    assert [x for part in parts for x in part] == items
    assert [len(p) for p in parts] == [3, 4, 4]


def test_every_awkward_file_is_converted_or_skipped_with_a_reason(tmp_path):
    good, bad = write_problem_images(tmp_path)
    for key, expected in good.items():
        img = open_rgb(tmp_path / key, max_pixels=PIXEL_LIMIT)
        assert img.mode == "RGB", key
        pixels = np.asarray(img)
        if key == "large.jpg":  # JPEG decoded at a reduced scale to stay under the pixel limit
            assert pixels.shape[0] * pixels.shape[1] <= PIXEL_LIMIT and pixels.shape[:2] == (600, 800)
            assert np.abs(pixels.astype(int) - expected[0, 0]).max() <= 2
        elif key == "cmyk.jpg":
            assert pixels.shape == expected.shape and np.abs(pixels.astype(int) - expected).max() == 0
        else:
            np.testing.assert_array_equal(pixels, expected, err_msg=key)
    kinds = {}
    for key in bad:
        with pytest.raises(ImageSkipped) as e:
            open_rgb(tmp_path / key, max_pixels=PIXEL_LIMIT)
        assert e.value.reason
        kinds[key] = e.value.kind
    assert kinds == {"truncated.jpg": "corrupt", "random-bytes.jpg": "unidentified", "empty.jpg": "empty",
                     "large.png": "too-large"}  # fmt: skip
    with pytest.raises(ImageSkipped, match="missing"):
        open_rgb(tmp_path / "nope.png")


def test_resize_matches_torchvision_as_seit_uses_it(tmp_path):
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8))
    squash = transforms.Compose([transforms.Resize((32, 32), interpolation=3), transforms.ToTensor()])
    ours = torch.from_numpy(np.asarray(resize(img, 32, "squash")).transpose(2, 0, 1).copy()).float() / 255
    assert torch.equal(ours, squash(img))
    crop = transforms.Compose([transforms.Resize(32, interpolation=3), transforms.CenterCrop(32)])
    for im in (img, img.transpose(Image.Transpose.TRANSPOSE)):
        np.testing.assert_array_equal(np.asarray(resize(im, 32, "crop")), np.asarray(crop(im)))
    sliver = Image.fromarray(rng.integers(0, 256, (1200, 30, 3), dtype=np.uint8))  # 40:1, resampled in a box
    ours, theirs = np.asarray(resize(sliver, 32, "crop")).astype(int), np.asarray(crop(sliver)).astype(int)
    assert ours.shape == (32, 32, 3) and np.abs(ours - theirs).mean() < 1


def test_dataset_returns_chw_uint8_or_the_skip_reason(tmp_path):
    write_problem_images(tmp_path)
    listing = list_images(tmp_path)
    ds = ImageDataset(listing.samples, 16, max_pixels=PIXEL_LIMIT)
    by_key = {s.key: ds[i] for i, s in enumerate(listing.samples)}
    _, image, kind, reason = by_key["plain.png"]
    assert image.shape == (3, 16, 16) and image.dtype == np.uint8 and kind == reason == ""
    np.testing.assert_array_equal(image.transpose(1, 2, 0), load_image(tmp_path / "plain.png", 16))
    _, image, kind, reason = by_key["empty.jpg"]
    assert image is None and kind == "empty" and "0 bytes" in reason
