"""One zstd frame per sample: checksummed, without magic number or content size, optionally with a dictionary.

The frame checksum (XXH64 of the content) is what turns corrupt or truncated bytes into an error instead of
wrong tokens. The magic number and the content size are left out: they would cost 5-6 bytes per ~700-byte
sample, and a corrupt content size would make zstd allocate whatever it claims; instead the caller passes
the largest size a valid sample can have, and the frame header (one fixed byte, then the window size) is
checked before zstd sees it, so a flipped bit cannot ask for a huge window either.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import zstandard

from seit.store.errors import StoreError

_FORMAT = zstandard.FORMAT_ZSTD1_MAGICLESS
_DESCRIPTOR = 0x04  # frame header descriptor of our frames: checksum; no content size, no dictionary id
_MIN_DICT_SAMPLES = 16  # zdict needs a handful of samples; with fewer a dictionary would not pay for itself


class ZstdFrames:
    """Compress and decompress single samples; a dictionary (``b""`` for none) primes every frame."""

    def __init__(self, dictionary: bytes = b"", level: int = 19) -> None:
        if not 1 <= level <= 22:
            raise StoreError(f"zstd level {level} outside 1..22")
        self.dictionary = bytes(dictionary)
        self.level = level
        zdict = zstandard.ZstdCompressionDict(self.dictionary) if self.dictionary else None
        params = zstandard.ZstdCompressionParameters.from_level(
            level, format=_FORMAT, write_checksum=True, write_content_size=False, write_dict_id=False
        )
        self._compressor = zstandard.ZstdCompressor(dict_data=zdict, compression_params=params)
        self._decompressor = zstandard.ZstdDecompressor(dict_data=zdict, format=_FORMAT)

    def compress(self, data: bytes) -> bytes:
        return self._compressor.compress(data)

    def decompress_large(self, blob: bytes, max_size: int) -> bytes:
        """One frame of up to ``max_size`` bytes, decoded in steps, so memory follows what it really holds."""
        if not self._header_ok(blob, max_size):
            raise StoreError("frame is corrupt or truncated (not a seit zstd frame header)")
        out = io.BytesIO()
        try:
            step = self._decompressor.decompressobj()
            for i in range(0, len(blob), 256):  # 256 input bytes expand to at most ~8 MB
                out.write(step.decompress(blob[i : i + 256]))
                if out.tell() > max_size:
                    raise zstandard.ZstdError(f"content exceeds {max_size} bytes")
            if not step.eof:
                raise zstandard.ZstdError("truncated frame")
        except zstandard.ZstdError as e:
            raise StoreError(f"frame is corrupt or truncated ({e})") from None
        return out.getvalue()

    @staticmethod
    def _header_ok(b: bytes | memoryview, max_size: int) -> bool:
        # Window descriptor: exponent e in the top 5 bits, window ~ 2**(10 + e); no frame needs more than max_size.
        largest_descriptor = (max((max_size - 1).bit_length() - 10, 0) + 1) << 3 | 7
        return len(b) >= 3 and b[0] == _DESCRIPTOR and b[1] <= largest_descriptor

    def decompress_many(self, blobs: Sequence[bytes | memoryview], max_size: int) -> list[bytes]:
        """Each frame's content; a frame that fails its checksum or decodes past ``max_size`` bytes raises."""
        decompress = self._decompressor.decompress
        out = []
        try:
            for b in blobs:
                if not self._header_ok(b, max_size):
                    raise zstandard.ZstdError("not a seit zstd frame header")
                out.append(decompress(b, max_output_size=max_size))
        except zstandard.ZstdError as e:
            raise StoreError(f"sample {len(out)} of the batch is corrupt or truncated ({e})") from None
        return out


def train_dictionary(samples: Sequence[bytes], size: int, level: int) -> bytes:
    """A zstd dictionary of at most ``size`` bytes for data like ``samples``; ``b""`` when there is too little."""
    samples = [s for s in samples if s]
    if size <= 0 or len(samples) < _MIN_DICT_SAMPLES or sum(map(len, samples)) < 8 * size:
        return b""
    try:
        return zstandard.train_dictionary(size, samples, level=level).as_bytes()
    except zstandard.ZstdError:  # e.g. samples too uniform to learn from
        return b""
