import json

import numpy as np
import pytest
import torch

from seit.images import list_images, load_image
from seit.tokenizer.checkpoint import load_tokenizer
from seit.tokenizer.encode import encode_images, summarize_skips, write_skip_report
from tokenizer_testdata import FIXTURES, PIXEL_LIMIT, write_image_folder, write_problem_images


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(FIXTURES / "vitvq-tiny.ckpt")


def _direct_ids(tokenizer, samples, resize="squash"):
    """Reference: decode each image on its own and encode it alone."""
    images = np.stack([load_image(s.path, 64, resize, PIXEL_LIMIT) for s in samples])
    return tokenizer.encode(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255).numpy()


def test_problem_folder_skips_exactly_the_unreadable_and_encodes_the_rest(tmp_path, tokenizer):
    good, bad = write_problem_images(tmp_path / "imgs")
    samples = list_images(tmp_path / "imgs").samples
    job = encode_images(tokenizer, samples, batch_size=4, num_workers=2, device="cpu", max_pixels=PIXEL_LIMIT)
    batches = list(job)
    keys = [k for _, _, batch_keys in batches for k in batch_keys]
    assert keys == sorted(good)  # input order, every good image once
    assert {r.key for r in job.skipped} == bad and job.encoded == len(good)
    ids = np.concatenate([b[0] for b in batches])
    assert ids.dtype == np.int16 and ids.shape == (len(good), 8, 8)
    kept = [s for s in samples if s.key in good]
    np.testing.assert_array_equal(ids, _direct_ids(tokenizer, kept))
    assert all(len(b[1]) == len(b[2]) == len(b[0]) for b in batches)

    write_skip_report(tmp_path / "skipped.jsonl", job.skipped)
    records = [json.loads(line) for line in (tmp_path / "skipped.jsonl").read_text().splitlines()]
    assert [r["key"] for r in records] == sorted(bad) and all(r["reason"] and r["kind"] for r in records)
    summary = summarize_skips(job.skipped, len(samples))
    assert summary.startswith(f"4 of {len(samples)} images skipped (") and "1 empty" in summary


def test_ranks_take_contiguous_shares_and_resume_skips_done_keys(tmp_path, tokenizer):
    write_image_folder(tmp_path, 10, 40, classes=2)
    samples = list_images(tmp_path).samples
    per_rank = []
    for rank in range(3):
        job = encode_images(tokenizer, samples, batch_size=3, num_workers=0, device="cpu", rank=rank, world_size=3)
        per_rank.append([(k, int(label)) for _, labels, keys in job for k, label in zip(keys, labels)])
    assert [k for part in per_rank for k, _ in part] == [s.key for s in samples]
    assert [len(p) for p in per_rank] == [3, 3, 4]
    assert dict(per_rank[0] + per_rank[1] + per_rank[2]) == {s.key: s.label for s in samples}

    done = {s.key for s in samples[:4]}
    job = encode_images(tokenizer, samples, batch_size=4, num_workers=0, device="cpu", skip_keys=done, resize="crop")
    out = list(job)
    assert [k for _, _, keys in out for k in keys] == [s.key for s in samples[4:]]
    np.testing.assert_array_equal(np.concatenate([o[0] for o in out]), _direct_ids(tokenizer, samples[4:], "crop"))

    bf16 = list(encode_images(tokenizer, samples[:3], batch_size=3, num_workers=0, device="cpu", precision="bf16"))
    assert bf16[0][0].shape == (3, 8, 8) and bf16[0][0].min() >= 0 and bf16[0][0].max() < 512


def test_encode_images_takes_a_folder_path_as_it_takes_its_samples(tmp_path, tokenizer):
    from seit.tokenizer.config import TokenizerError

    write_image_folder(tmp_path / "imgs", 4, 64, classes=2)
    by_path = list(encode_images(tokenizer, str(tmp_path / "imgs"), num_workers=0, device="cpu"))
    by_samples = list(encode_images(tokenizer, list_images(tmp_path / "imgs").samples, num_workers=0, device="cpu"))
    assert [k for *_, keys in by_path for k in keys] == [k for *_, keys in by_samples for k in keys]
    np.testing.assert_array_equal(by_path[0][0], by_samples[0][0])
    with pytest.raises(TokenizerError, match="takes an image folder, a list file, an ImageList"):
        encode_images(tokenizer, 42)
    with pytest.raises(TokenizerError, match="takes a loaded tokenizer"):
        encode_images(str(tmp_path / "tok.safetensors"), str(tmp_path / "imgs"))
