import numpy as np
import pytest

from seit.store.codec import RawCodec, codec_class
from seit.store.errors import StoreError


@pytest.mark.parametrize("shape,k", [((32, 32), 391), ((8, 8), 256), ((1024,), 65536), ((4, 5), 7)])
def test_raw_codec_roundtrip_any_grid_and_codebook(shape, k):
    rng = np.random.default_rng(0)
    samples = rng.integers(0, k, size=(5, *shape))
    codec = codec_class("raw").fit(samples, shape, k)
    back = codec.decode_many([codec.encode(s) for s in samples])
    np.testing.assert_array_equal(back, samples)
    assert back.dtype == (np.int16 if k <= 32768 else np.int32)


def test_raw_codec_rejects_bad_samples():
    codec = RawCodec((2, 2), 10)
    with pytest.raises(StoreError, match="grid shape"):
        codec.encode(np.zeros((3, 2), dtype=int))
    with pytest.raises(StoreError, match="outside the codebook"):
        codec.encode(np.full((2, 2), 10))
    with pytest.raises(StoreError, match="expects 4"):
        codec.decode_many([b"\x00" * 3])
