import gzip
import io
from pathlib import Path

import numpy as np
import pytest

from seit.interop.seit_release import decode_sample, encode_stream
from seit.store.errors import StoreError

TOKENS = Path(__file__).parent / "fixtures" / "seit-reference" / "tokens"


@pytest.mark.parametrize("split", ["train", "val"])
def test_stream_codec_matches_the_release_bytes(split):
    raw = gzip.decompress((TOKENS / f"tiny-{split}-token.data.bin.gz").read_bytes())
    index = np.load(io.BytesIO(gzip.decompress((TOKENS / f"tiny-{split}-token.index.npy.gz").read_bytes())))
    grids = np.load(TOKENS / "tiny-expected.npz")[f"{split}_grids"]
    decoded = [decode_sample(raw[index[i] : index[i + 1]], 1024).reshape(32, 32) for i in range(len(grids))]
    np.testing.assert_array_equal(np.stack(decoded), grids)
    data, offsets = encode_stream(grids)
    assert data == raw
    np.testing.assert_array_equal(offsets, index)


def test_stream_refuses_ids_it_cannot_hold_and_truncation():
    with pytest.raises(StoreError, match="509"):
        encode_stream([np.array([[510]])])
    data, _ = encode_stream([np.array([300, 2])])
    with pytest.raises(StoreError, match="expected 3"):
        decode_sample(data, 3)
    with pytest.raises(StoreError, match="truncated"):
        decode_sample(data[:1], 1)
