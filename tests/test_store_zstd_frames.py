import numpy as np
import pytest

from seit.store.errors import StoreError
from seit.store.zstd_frames import ZstdFrames, train_dictionary


def samples(n, seed=0):
    rng = np.random.default_rng(seed)
    return [bytes(np.repeat(rng.integers(0, 200, size=400), 3).astype(np.uint8)) for _ in range(n)]


def test_dictionary_training_needs_enough_samples():
    assert train_dictionary([b"abc"] * 3, 4096, 19) == b""
    dictionary = train_dictionary(samples(200), 4096, 19)
    assert 0 < len(dictionary) <= 4096
    plain, primed = ZstdFrames(), ZstdFrames(dictionary)
    data = samples(20, seed=1)
    assert sum(len(primed.compress(d)) for d in data) < sum(len(plain.compress(d)) for d in data)
    assert primed.decompress_many([primed.compress(d) for d in data], 1200) == data


def test_frames_refuse_bad_headers_oversized_content_and_other_dictionaries():
    frames = ZstdFrames(train_dictionary(samples(200), 4096, 19))
    data = samples(2, seed=2)
    blobs = [frames.compress(d) for d in data]
    with pytest.raises(StoreError, match="sample 1 of the batch"):
        frames.decompress_many([blobs[0], b"\x44" + blobs[1][1:]], 1200)  # content-size flag set
    with pytest.raises(StoreError, match="sample 0 of the batch"):
        frames.decompress_many([blobs[0][:1] + b"\xf8" + blobs[0][2:]], 1200)  # a 2**41-byte window
    with pytest.raises(StoreError, match="corrupt or truncated"):
        frames.decompress_many(blobs, 1000)  # decodes past the largest valid sample
    with pytest.raises(StoreError):
        ZstdFrames().decompress_many(blobs, 1200)  # needs the dictionary it was written with
    with pytest.raises(StoreError):
        ZstdFrames(level=30)
