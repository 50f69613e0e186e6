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


def test_level_bounds_and_defaults_are_exact():
    assert (ZstdFrames().dictionary, ZstdFrames().level) == (b"", 19)  # the level is recorded in codec params
    assert ZstdFrames(level=1).level == 1 and ZstdFrames(level=22).level == 22
    for level in (0, 23):
        with pytest.raises(StoreError, match=f"zstd level {level} outside 1..22"):
            ZstdFrames(level=level)


def test_header_check_accepts_exactly_the_windows_max_size_needs():
    # descriptor byte 1: window exponent e (top 5 bits) and mantissa (low 3); e = bit_length(max_size - 1) - 10
    ok = ZstdFrames._header_ok
    for max_size, largest in ((100, 15), (1024, 15), (1025, 23), (1200, 23), (2048, 23), (2049, 31)):
        assert ok(bytes([0x04, largest, 0]), max_size), max_size
        assert not ok(bytes([0x04, largest + 1, 0]), max_size), max_size
    assert ok(bytes([0x04, 0, 0]), 1200) and not ok(bytes([0x04, 0]), 1200)  # three bytes at least
    assert not ok(bytes([0x44, 0, 0]), 1200)  # another descriptor (content size written)
    with pytest.raises(StoreError, match=r"sample 0 of the batch is corrupt or truncated \(not a seit zstd frame"):
        ZstdFrames().decompress_many([bytes([0x44, 0, 0])], 1200)


def test_decompress_large_decodes_in_steps_up_to_exactly_max_size():
    frames = ZstdFrames(level=1)
    data = bytes(np.random.default_rng(3).integers(0, 256, size=3000).astype(np.uint8))  # incompressible: 12 steps
    blob = frames.compress(data)
    assert len(blob) > 2 * 256
    assert frames.decompress_large(blob, len(data)) == data
    with pytest.raises(StoreError, match=r"^frame is corrupt or truncated \(content exceeds 2999 bytes\)$"):
        frames.decompress_large(blob, len(data) - 1)
    with pytest.raises(StoreError, match=r"^frame is corrupt or truncated \(truncated frame\)$"):
        frames.decompress_large(blob[:-1], len(data))
    with pytest.raises(StoreError, match=r"^frame is corrupt or truncated \(not a seit zstd frame header\)$"):
        frames.decompress_large(b"\x44" + blob[1:], len(data))
    flipped = bytearray(blob)
    flipped[-1] ^= 1  # the checksum
    with pytest.raises(StoreError, match=r"^frame is corrupt or truncated \("):
        frames.decompress_large(bytes(flipped), len(data))


def test_dictionary_training_thresholds_are_exact():
    sixteen = samples(16)  # 16 x 1200 bytes: enough to train a dictionary of up to 19200 / 8 = 2400 bytes
    assert len(train_dictionary(sixteen, 2400, 19)) == 2400
    assert train_dictionary(sixteen, 2401, 19) == b""
    assert train_dictionary(sixteen[:15], 1024, 19) == b""  # fewer than 16 samples
    assert train_dictionary(sixteen + [b""] * 4, 2400, 19) != b""  # empty samples do not count
    assert train_dictionary([*sixteen[:15], b""], 1024, 19) == b""
    assert train_dictionary(sixteen, -1, 19) == b""
    assert train_dictionary(sixteen, 128, 19) == b""  # zstd refuses (too small to train): no dictionary
