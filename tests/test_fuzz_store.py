"""Fuzzing a small real store: damaged files give the right data or a StoreError; forged ones (damage with every
checksum re-computed) a StoreError or some data, never another exception, a hang or a big allocation.

Fixed, derandomized budgets keep the file to seconds; it runs in the default suite.
"""

import hashlib
import json
import shutil
import signal
import tempfile
import tracemalloc
import zlib
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seit.store import StoreError, TokenStore, verify_store
from seit.store.format import MANIFEST, TRAILER, json_sha256
from seit.store.stream import TokenStream
from seit.store.zstd_frames import ZstdFrames
from store_util import CODEC_NAMES, K, write_store

MAX_PEAK_BYTES = 64 << 20
SECONDS_PER_EXAMPLE = 20
FUZZ = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """Per codec: (store directory, what it holds), with a codebook, synonyms and code ids."""
    rng = np.random.default_rng(0)
    book = rng.normal(size=(K, 4)).astype(np.float32)
    synonyms = np.argsort(-book @ book.T, axis=1)[:, :3]
    out = {}
    for codec in CODEC_NAMES:
        path = tmp_path_factory.mktemp("fuzz") / codec
        ids, labels, keys = write_store(
            path, 40, codec=codec, shard_bytes=400, codebook=book, synonyms=synonyms, code_ids=np.arange(K)
        )
        truth = {"ids": ids, "labels": labels, "keys": keys, "codebook": book, "synonyms": synonyms}
        out[codec] = (path, truth)
    return out


@contextmanager
def bounded():
    """Fail on a hang (SIGALRM) or a peak of traced allocations above MAX_PEAK_BYTES."""

    def timeout(*_):
        raise TimeoutError(f"read took more than {SECONDS_PER_EXAMPLE} s")

    old = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(SECONDS_PER_EXAMPLE)
    tracemalloc.start()
    try:
        yield
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert peak < MAX_PEAK_BYTES, f"peak {peak} bytes"


def read_all(path) -> dict:
    """Everything a reader offers without verifying, through random access and streaming."""
    store = TokenStore.open(path, verify=False)
    ids, labels = store.get_batch(range(len(store)))
    got = {"ids": ids, "labels": labels, "keys": store.keys, "codebook": store.codebook, "synonyms": store.synonyms}
    streamed = list(TokenStream(path, 7, shuffle=False, drop_last=False))
    got["streamed"] = np.concatenate([b[0].numpy() for b in streamed]) if streamed else ids[:0]
    store.code_ids  # noqa: B018 - reading it is the check
    return got


def check_read(path, truth: dict, exact: bool) -> None:
    """Reads and ``verify`` each give the right data (``exact``) or raise StoreError, within bounds."""
    with bounded():
        try:
            got = read_all(path)
        except StoreError:
            got = None
        with suppress(StoreError):
            verify_store(path, show_progress=False)
    if exact and got is not None:
        np.testing.assert_array_equal(got["ids"], truth["ids"])
        np.testing.assert_array_equal(got["streamed"], truth["ids"])
        np.testing.assert_array_equal(got["labels"], truth["labels"])
        assert got["keys"] == truth["keys"]
        np.testing.assert_array_equal(got["codebook"], truth["codebook"])
        np.testing.assert_array_equal(got["synonyms"], truth["synonyms"])


def files_of(path) -> list[tuple[str, int]]:
    """Every file of the store, with where its most-trusted bytes begin (a shard's index)."""
    m = json.loads((Path(path) / MANIFEST).read_text())
    names = [(MANIFEST, 0), *((s["file"], s["payload_bytes"]) for s in m["shards"][:2])]
    return names + [(c["file"], 0) for c in m["codecs"]] + [(m[k]["file"], 0) for k in ("codebook", "synonyms")]


@st.composite
def damage(draw, data: bytes, hot: int = 0) -> bytes:
    """A bit flip, truncation, overwrite or extension; half of them at or after byte ``hot`` (a shard's index)."""
    kind = draw(st.sampled_from(["flip", "truncate", "overwrite", "extend"]))
    if not data or kind == "extend":
        return data + draw(st.binary(min_size=1, max_size=64))
    pos = draw(st.integers(min(hot, len(data) - 1) if draw(st.booleans()) else 0, len(data) - 1))
    if kind == "flip":
        return data[:pos] + bytes([data[pos] ^ (1 << draw(st.integers(0, 7)))]) + data[pos + 1 :]
    if kind == "truncate":
        return data[:pos]
    new = draw(st.binary(min_size=1, max_size=16))
    return data[:pos] + new + data[pos + len(new) :]


@contextmanager
def copy_of(path):
    with tempfile.TemporaryDirectory() as tmp:
        dst = Path(tmp) / "s"
        shutil.copytree(path, dst)
        yield dst


@given(codec=st.sampled_from(CODEC_NAMES), which=st.integers(0, 1 << 16), data=st.data())
@settings(FUZZ, max_examples=300)
def test_damaged_files_give_the_right_data_or_a_store_error(stores, codec, which, data):
    path, truth = stores[codec]
    with copy_of(path) as s:
        names = files_of(s)
        name, hot = names[which % len(names)]
        target = s / name
        target.write_bytes(data.draw(damage(target.read_bytes(), hot), label=name))
        check_read(s, truth, exact=True)


def _json_paths(obj, prefix=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _json_paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _json_paths(v, (*prefix, i))
    yield prefix


JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(1 << 40), 1 << 40),
    st.sampled_from([0, 1, -1, 2**31, 2**32 - 1, 2**63, 100000, "../../x", "manifest.json", "raw"]),
    st.text(max_size=8),
    st.lists(st.integers(-5, 1 << 20), max_size=3),
)


@given(codec=st.sampled_from(CODEC_NAMES), data=st.data())
@FUZZ
def test_forged_manifest_fields_raise_only_store_errors(stores, codec, data):
    path, truth = stores[codec]
    with copy_of(path) as s:
        m = json.loads((s / MANIFEST).read_text())
        paths = [p for p in _json_paths(m) if p and p[0] != "checksum"]
        field = data.draw(st.sampled_from(paths), label="field")
        parent = m
        for key in field[:-1]:
            parent = parent[key]
        parent[field[-1]] = data.draw(JSON_VALUES, label="value")
        m["checksum"] = json_sha256(m)
        (s / MANIFEST).write_text(json.dumps(m))
        check_read(s, truth, exact=False)


TRAILER_FIELDS = range(1, 9)  # n, P, L, K, label size, G, key text bytes, CRC


@given(codec=st.sampled_from(CODEC_NAMES), data=st.data())
@FUZZ
def test_forged_shard_trailers_and_index_bytes_raise_only_store_errors(stores, codec, data):
    """Damage with the index CRC and the manifest's sha256 and size made to match: a hostile shard."""
    path, truth = stores[codec]
    with copy_of(path) as s:
        m = json.loads((s / MANIFEST).read_text())
        i = data.draw(st.integers(0, len(m["shards"]) - 1), label="shard")
        entry = m["shards"][i]
        raw = (s / entry["file"]).read_bytes()
        if data.draw(st.booleans(), label="edit a trailer field"):
            fields = list(TRAILER.unpack(raw[-TRAILER.size :]))
            field = data.draw(st.sampled_from(TRAILER_FIELDS), label="field")
            limit = (1 << 64) - 1 if field in (1, 2) else (1 << 32) - 1
            fields[field] = data.draw(st.one_of(st.integers(0, 4 * len(raw)), st.integers(0, limit)), label="value")
            raw = raw[: -TRAILER.size] + TRAILER.pack(*fields)
        else:
            raw = raw[: entry["payload_bytes"]] + data.draw(damage(raw[entry["payload_bytes"] :]), label="index")
        raw = raw[:-4] + zlib.crc32(raw[entry["payload_bytes"] : -4]).to_bytes(4, "little")
        (s / entry["file"]).write_bytes(raw)
        entry.update(bytes=len(raw), sha256=hashlib.sha256(raw).hexdigest())
        m["checksum"] = json_sha256(m)
        (s / MANIFEST).write_text(json.dumps(m))
        check_read(s, truth, exact=False)


@given(codec=st.sampled_from(CODEC_NAMES), data=st.data())
@FUZZ
def test_forged_codec_states_raise_only_store_errors(stores, codec, data):
    """The codec state's content damaged (inside its zstd frame for the ctx codecs), its sha256 re-computed."""
    path, truth = stores[codec]
    with copy_of(path) as s:
        m = json.loads((s / MANIFEST).read_text())
        entry = m["codecs"][0]
        state = (s / entry["file"]).read_bytes()
        if codec.startswith("ctx"):
            inner = ZstdFrames().decompress_large(state, 1 << 28)
            state = ZstdFrames(level=1).compress(data.draw(damage(inner), label="npz"))
        else:
            state = data.draw(damage(state), label="state")
        (s / entry["file"]).write_bytes(state)
        entry.update(bytes=len(state), sha256=hashlib.sha256(state).hexdigest())
        m["checksum"] = json_sha256(m)
        (s / MANIFEST).write_text(json.dumps(m))
        check_read(s, truth, exact=False)
