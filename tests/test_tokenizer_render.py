import numpy as np
import torch
from PIL import Image

from seit.tokenizer.checkpoint import load_tokenizer
from seit.tokenizer.render import decode_to_images, image_grid, write_comparison, write_png
from tokenizer_testdata import FIXTURES


def test_decode_to_images_is_the_clamped_rounded_decoder_output():
    tok = load_tokenizer(FIXTURES / "vitvq-tiny.ckpt")
    codes = np.load(FIXTURES / "vitvq-tiny-expected.npz")["codes"].reshape(-1, 8, 8).astype(np.int16)
    images = decode_to_images(tok, codes, batch_size=3)  # two batches
    assert images.shape == (4, 64, 64, 3) and images.dtype == np.uint8
    with torch.no_grad():
        raw = tok.decode(torch.from_numpy(codes).long())
    expected = (raw.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(images, expected)
    assert decode_to_images(tok, np.zeros((0, 8, 8), np.int64)).shape == (0, 64, 64, 3)


def test_png_and_grid_files(tmp_path):
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (3, 5, 4, 3), dtype=np.uint8) for _ in range(2))
    grid = image_grid([a, b], pad=1)
    assert grid.shape == (2 * 6 + 1, 3 * 5 + 1, 3)
    np.testing.assert_array_equal(grid[1:6, 1:5], a[0])
    np.testing.assert_array_equal(grid[7:12, 11:15], b[2])
    assert (grid[0] == 255).all()
    write_png(tmp_path / "one.png", a[1])
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "one.png")), a[1])
    write_comparison(tmp_path / "cmp.png", a, b)
    assert Image.open(tmp_path / "cmp.png").size == (3 * 6 + 2, 2 * 7 + 2)
