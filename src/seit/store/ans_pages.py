"""Entropy coding of symbol sequences with pcodec: one tANS table per group of samples, one page per sample.

zstd codes every sample as its own frame, and its fixed costs (frame, block and literal headers, Huffman's
whole-bit code lengths, two bytes for symbols beyond 255) add ~40 bytes to a ~700-byte sample. pcodec
(``pco``, https://github.com/pcodec/pcodec) splits the work the way a token store needs: a *chunk* holds
the tables (bins and tANS weights) fitted to all its numbers, and each *page* of the chunk decodes on its
own given the chunk's metadata. A group of samples is one chunk: its metadata is the group's shared
header, each sample one page, within ~1% of the symbols' order-0 entropy, decoding at ~2 us per
1024-symbol page.

Pages carry no checksum of their own, so every sample body starts with the CRC-32 of (header, page): a
corrupt header, a flipped bit or a truncation raises :class:`StoreError` instead of decoding to wrong tokens.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from pcodec import ChunkConfig, DeltaSpec, ModeSpec, PagingSpec, wrapped

from seit.store.errors import StoreError

_CRC_BYTES = 4
_MAX_DECODERS = 4096  # cached group decoders (a few hundred bytes each)


class GroupedBlob(NamedTuple):
    """One sample encoded with a group: the header the group shares, and the sample's own bytes.

    Shards store each header once per group (see :mod:`seit.store.format`); the reader hands both back.
    """

    header: bytes
    body: bytes | memoryview


class AnsPages:
    """Encode groups of equal-length symbol sequences (values in ``[0, alphabet)``) and decode any of their samples."""

    def __init__(self, numel: int, alphabet: int, level: int = 8) -> None:
        if not 0 <= level <= 12:
            raise StoreError(f"pcodec compression level {level} outside 0..12")
        self.numel = numel
        self.level = level
        self.dtype = np.dtype(np.uint16 if alphabet <= 1 << 16 else np.uint32)
        self._pco_dtype = "u16" if self.dtype == np.uint16 else "u32"
        self._decoders: dict[bytes, tuple[wrapped.ChunkDecompressor, int]] = {}

    def encode_group(self, symbols: np.ndarray) -> list[GroupedBlob]:
        """symbols [B, numel] -> one GroupedBlob per sample, all sharing one header object."""
        flat = np.ascontiguousarray(symbols, dtype=self.dtype).reshape(-1)
        config = ChunkConfig(
            compression_level=self.level,
            mode_spec=ModeSpec.classic(),
            delta_spec=DeltaSpec.no_op(),
            paging_spec=PagingSpec.exact_page_sizes([self.numel] * len(symbols)),
        )
        pco_file = wrapped.FileCompressor()
        file_header = pco_file.write_header()
        chunk = pco_file.chunk_compressor(flat, config)
        # The pco file header (format version) travels with every group, so a group decodes on its own.
        header = bytes([len(file_header)]) + file_header + chunk.write_meta()
        header_crc = zlib.crc32(header)
        out = []
        for i in range(len(symbols)):
            page = chunk.write_page(i)
            out.append(GroupedBlob(header, zlib.crc32(page, header_crc).to_bytes(_CRC_BYTES, "little") + page))
        return out

    def decode_many(self, blobs: Sequence[GroupedBlob]) -> np.ndarray:
        """Samples of any groups -> symbols [B, numel]; a sample that fails its checksum raises."""
        out = np.empty((len(blobs), self.numel), dtype=self.dtype)
        for i, blob in enumerate(blobs):
            if not isinstance(blob, tuple) or len(blob) != 2:
                raise StoreError(f"sample {i} of the batch has no group header (the shard's group table is damaged)")
            header, body = blob
            decoder, header_crc = self._decoder(header, i)
            page = bytes(body[_CRC_BYTES:])
            if len(body) < _CRC_BYTES or zlib.crc32(page, header_crc) != int.from_bytes(body[:_CRC_BYTES], "little"):
                raise StoreError(f"sample {i} of the batch is corrupt or truncated (checksum mismatch)")
            try:
                decoder.read_page_into(page, self.numel, out[i])
            except Exception as e:  # a checksummed page that pco rejects: a bug or a forged file
                raise StoreError(f"sample {i} of the batch cannot be decoded ({e})") from None
        return out

    def _decoder(self, header: bytes, i: int) -> tuple[wrapped.ChunkDecompressor, int]:
        header = bytes(header)
        found = self._decoders.get(header)
        if found is None:
            try:
                size = header[0]
                pco_file, _ = wrapped.FileDecompressor.new(header[1 : 1 + size])
                decoder, used = pco_file.chunk_decompressor(header[1 + size :], self._pco_dtype)
                if used != len(header) - 1 - size:
                    raise ValueError(f"{len(header) - 1 - size - used} trailing bytes")
            except Exception as e:
                raise StoreError(f"sample {i} of the batch has a damaged group header ({e})") from None
            if len(self._decoders) >= _MAX_DECODERS:
                self._decoders.clear()
            found = self._decoders[header] = (decoder, zlib.crc32(header))
        return found
