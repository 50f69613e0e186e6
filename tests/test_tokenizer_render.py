import numpy as np
import torch
from PIL import Image

from seit.cli import main
from seit.store import StoreWriter
from seit.tokenizer.checkpoint import load_tokenizer
from seit.tokenizer.render import (
    decode_to_images,
    grid_of,
    image_grid,
    spread_indices,
    write_comparison,
    write_png,
)
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


def test_decode_command_writes_pngs_and_a_grid_through_the_stores_code_ids(tmp_path, capsys):
    tok = load_tokenizer(FIXTURES / "vitvq-tiny.ckpt")
    rng = np.random.default_rng(0)
    code_ids = np.sort(rng.choice(512, size=20, replace=False))  # a store pruned to 20 of the 512 codes
    ids = rng.integers(0, 20, (7, 8, 8))
    keys = [f"cls/im {i}.JPEG" for i in range(7)]
    with StoreWriter(
        tmp_path / "s",
        grid_shape=(8, 8),
        codebook_size=20,
        codebook=tok.classifier_codebook().numpy()[code_ids],
        code_ids=code_ids,
    ) as w:
        w.append_batch(ids, np.zeros(7, dtype=int), keys)
    expected = decode_to_images(tok, code_ids[ids])

    args = ["decode", str(tmp_path / "s"), "--tokenizer", str(FIXTURES / "vitvq-tiny.ckpt"), "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "png"), "--indices", "5", "1", "--batch-size", "1"]) == 0
    assert "2 decoded samples written" in capsys.readouterr().out
    files = [tmp_path / "png" / "0000005-cls_im_5.png", tmp_path / "png" / "0000001-cls_im_1.png"]
    np.testing.assert_array_equal(np.stack([np.asarray(Image.open(f)) for f in files]), expected[[5, 1]])

    assert main([*args, "--grid", str(tmp_path / "grid.png"), "--count", "4"]) == 0
    picks = spread_indices(7, 4)
    assert picks.tolist() == [0, 2, 4, 6]
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "grid.png")), grid_of(expected[picks]))
    assert grid_of(expected[:3]).shape == (2 * 66 + 2, 2 * 66 + 2, 3)  # 2x2 cells, one left blank
    assert (grid_of(expected[:3])[68:130, 68:130] == 255).all()

    assert main([*args, "--indices", "7", "--grid", str(tmp_path / "g.png")]) == 1
    assert "sample index 7 out of range" in capsys.readouterr().err
    assert main(args) == 1
    assert "give --output DIR" in capsys.readouterr().err

    other = tok.classifier_codebook().numpy()[code_ids][::-1].copy()
    with StoreWriter(tmp_path / "t", grid_shape=(8, 8), codebook_size=20, codebook=other, code_ids=code_ids) as w:
        w.append(ids[0], 0, "a")
    assert main(["decode", str(tmp_path / "t"), *args[2:], "--grid", str(tmp_path / "g.png")]) == 1
    assert "the store's codebook is not this tokenizer's" in capsys.readouterr().err
    with StoreWriter(tmp_path / "u", grid_shape=(8, 8), codebook_size=20) as w:
        w.append(ids[0], 0, "a")
    assert main(["decode", str(tmp_path / "u"), *args[2:], "--grid", str(tmp_path / "g.png")]) == 1
    assert "no code_ids" in capsys.readouterr().err
