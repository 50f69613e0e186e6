"""Fuzzed SeiT release files and image folders: every read returns exactly the right data or a SeitError.

A fixed, derandomized budget (seconds on one core) so the suite runs in CI; each example also has an alarm
(no hang) and a bound on the process's peak memory (no allocation sized by a damaged field).
"""

import contextlib
import gzip
import io
import os
import resource
import signal
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from seit.errors import SeitError
from seit.images import ImageSkipped, list_images, open_rgb
from seit.interop.seit_release import (
    MAX_CLASSES,
    SeitReleaseDataset,
    iter_release,
    read_codebook,
    read_index,
    read_synonyms,
    stream_bound,
)

TOKENS = Path(__file__).parent / "fixtures" / "seit-reference" / "tokens"
GRID = (32, 32)
FUZZ = settings(
    max_examples=800, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)
MEMORY_HEADROOM_MB = 400  # the fixture is ~1 MB decoded; a damaged field must not size anything near this
ALARM_S = 20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextlib.contextmanager
def no_hang_and_bounded_memory():
    """An alarm against hangs; the process's peak memory may not grow by more than the headroom."""
    baseline_mb = peak_rss_mb()

    def timeout(*_):
        raise TimeoutError(f"a read took over {ALARM_S} s")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(ALARM_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert peak_rss_mb() < baseline_mb + MEMORY_HEADROOM_MB


# ---- SeiT release files -----------------------------------------------------------------------------------
ORIGINAL = {
    "tokens": (TOKENS / "tiny-val-token.data.bin.gz").read_bytes(),
    "index": (TOKENS / "tiny-val-token.index.npy.gz").read_bytes(),
    "labels": (TOKENS / "tiny-val-label.txt").read_bytes(),
}
EXPECTED = np.load(TOKENS / "tiny-expected.npz")


def mutate(data: bytes, draw) -> bytes:
    """One random damage: flipped bytes, a cut, an insertion, an overwritten run, or trailing bytes."""
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "overwrite", "append"]))
    n = len(data)
    if kind == "truncate":
        return data[: draw(st.integers(0, max(n - 1, 0)))]
    at = draw(st.integers(0, n))
    blob = draw(st.binary(min_size=1, max_size=16))
    if kind == "flip" and n:
        at = min(at, n - 1)
        return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    if kind == "insert":
        return data[:at] + blob + data[at:]
    if kind == "overwrite":
        return data[:at] + blob + data[at + len(blob) :]
    return data + blob


def npy_gz(offsets: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, offsets, allow_pickle=False)
    return gzip.compress(buf.getvalue())


@st.composite
def damaged_release(draw):
    """The val split with one file damaged: raw bytes (gzip's CRC guards them), the decoded index (offsets
    re-gzipped with a valid CRC: only the checks of the reader stand between them and a wrong answer), or
    the plain-text labels."""
    files = dict(ORIGINAL)
    target = draw(st.sampled_from(["tokens", "index", "labels", "offsets", "npy"]))
    if target in ("tokens", "index", "labels"):
        files[target] = mutate(files[target], draw)
    elif target == "offsets":
        offsets = np.load(io.BytesIO(gzip.decompress(files["index"])))
        i = draw(st.integers(0, len(offsets) - 1))
        offsets[i] = draw(st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-4, 4).map(lambda d: offsets[i] + d)))
        files["index"] = npy_gz(offsets)
    else:
        files["index"] = gzip.compress(mutate(gzip.decompress(files["index"]), draw))
    return target, files


def write_release(folder: Path, files: dict[str, bytes]) -> dict[str, Path]:
    paths = {
        "tokens": folder / "x-token.data.bin.gz",
        "index": folder / "x-token.index.npy.gz",
        "labels": folder / "x-label.txt",
    }
    for key, path in paths.items():
        path.write_bytes(files[key])
    return paths


def labels_as_written(text: bytes) -> list[int]:
    return [int(x) for x in text.decode("ascii").split()]


@FUZZ
@given(damaged_release())
def test_release_reads_are_exact_or_a_seit_error(case):
    target, files = case
    with tempfile.TemporaryDirectory() as tmp, no_hang_and_bounded_memory():
        paths = write_release(Path(tmp), files)
        try:
            ds = SeitReleaseDataset(paths["tokens"], paths["index"], paths["labels"], grid_shape=GRID)
            grids = np.stack([ds.grid(i) for i in range(len(ds))])
        except SeitError:
            grids = None
        try:
            offsets = read_index(paths["index"], numel=1024, stream_bytes=stream_bound(paths["tokens"]))
            streamed = np.concatenate([g for _, g in iter_release(paths["tokens"], offsets, GRID, batch_size=7)])
        except SeitError:
            streamed = None
    outcome = ["refused" if got is None else "read" for got in (grids, streamed)]
    event(f"{target}: dataset {outcome[0]}, stream {outcome[1]}")
    for got in (grids, streamed):
        if got is not None:  # a damaged token file or index never reads as other grids
            np.testing.assert_array_equal(got, EXPECTED["val_grids"])
    if grids is not None:
        if target == "labels":  # plain text has no checksum: the labels are what the file says, in bounds
            assert ds.labels.tolist() == labels_as_written(files["labels"])
            assert ds.labels.min() >= -1 and ds.labels.max() < MAX_CLASSES
        else:
            np.testing.assert_array_equal(ds.labels, EXPECTED["val_labels"])


# ---- image folders ------------------------------------------------------------------------------------------
ODD_NAMES = [
    "plain.png",
    "with space.png",
    "new\nline.png",
    "carriage\rreturn.jpg",
    "-leading-dash.png",
    "ünïcødé.png",
    "tab\there.png",
    "x" * 200 + ".png",
    os.fsdecode(b"latin1-\xe9.png"),
    os.fsdecode(b"\xff\xfe.jpg"),
    "UPPER.PNG",
]


def small_image(seed: int, fmt: str) -> tuple[bytes, np.ndarray]:
    """An encoded 7x6 image and its true pixels: what PIL decodes from the intact file (JPEG, GIF are lossy)."""
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (6, 7, 3), dtype=np.uint8)).save(buf, fmt)
    return buf.getvalue(), np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


@st.composite
def damaged_folder(draw):
    """A few intact images plus entries of every awkward kind: garbage, truncated images, odd names, links
    (to a parent, to itself, to a file, broken) and FIFOs. Returns (operations, intact key -> pixels)."""
    ops, truth = [], {}
    for i in range(draw(st.integers(1, 3))):
        data, pixels = small_image(i, draw(st.sampled_from(["PNG", "JPEG"])))
        folder = draw(st.sampled_from(["", "sub/", "sub/deeper/"]))
        ops.append(("file", f"{folder}good{i}.png", data))
        truth[f"{folder}good{i}.png"] = pixels
    for j in range(draw(st.integers(0, 5))):
        kind = draw(
            st.sampled_from(
                ["garbage", "truncated", "odd-name", "link-up", "link-self", "link-file", "broken-link", "fifo"]
            )
        )
        folder = draw(st.sampled_from(["", "sub/", "other/"]))
        name = f"{folder}{kind}{j}.png"
        if kind == "garbage":
            ops.append(("file", name, draw(st.binary(max_size=64))))
        elif kind == "truncated":
            data, pixels = small_image(10 + j, draw(st.sampled_from(["PNG", "JPEG", "GIF"])))
            cut = draw(st.integers(0, len(data) - 1))
            ops.append(("file", name, data[:cut]))
            truth[name] = ("truncated", data, pixels)
        elif kind == "odd-name":
            data, pixels = small_image(20 + j, "PNG")
            name = folder + draw(st.sampled_from(ODD_NAMES))
            if any(op[1] == name for op in ops):
                continue
            ops.append(("file", name, data))
            truth[name] = ("odd", data, pixels)
        elif kind == "link-up":
            ops.append(("link", f"{folder}up{j}", ".." if folder else "."))
        elif kind == "link-self":
            ops.append(("link", f"{folder}loop{j}", "."))
        elif kind == "link-file":
            ops.append(("link", name, "good0.png" if not folder else "../good0.png"))
        elif kind == "broken-link":
            ops.append(("link", name, "nowhere.png"))
        else:
            ops.append(("fifo", name, None))
    return ops, truth


def build(root: Path, ops) -> None:
    for kind, name, payload in ops:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "file":
            path.write_bytes(payload)
        elif kind == "link":
            os.symlink(payload, path)
        else:
            os.mkfifo(path)


def storable(key: str) -> bool:
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\n" not in key and "\r" not in key


@settings(max_examples=300, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(damaged_folder())
def test_image_folder_listing_and_decoding_are_exact_or_reported(case):
    ops, truth = case
    with tempfile.TemporaryDirectory() as tmp, no_hang_and_bounded_memory():
        root = Path(tmp) / "images"
        root.mkdir()
        build(root, ops)
        listing = list_images(root)  # there is always one intact image: listing never fails here
        keys = [s.key for s in listing.samples]
        decoded = {}
        for sample in listing.samples:
            try:
                decoded[sample.key] = np.asarray(open_rgb(sample.path))
            except ImageSkipped as e:
                decoded[sample.key] = e.kind
    undecodable = sum(isinstance(v, str) for v in decoded.values())
    event(f"{len(keys)} listed, {len(listing.skipped)} left out, {undecodable} skipped")
    assert len(keys) == len(set(keys)) and all(storable(k) for k in keys)  # each file once, every key storable
    assert all(not storable(r.key) for r in listing.skipped if r.kind == "bad-name")
    for key, expected in truth.items():
        if isinstance(expected, np.ndarray):  # an intact image reached by its real path: exact pixels
            np.testing.assert_array_equal(decoded[key], expected)
        elif expected[0] == "odd":  # an intact image under an odd name: exact, or skipped for its name
            if storable(key):
                np.testing.assert_array_equal(decoded[key], expected[2])
            else:
                assert key not in decoded and any(r.key == key and r.kind == "bad-name" for r in listing.skipped)
        else:  # a truncated image: skipped with a reason, or (only its trailer cut) the very same pixels
            got = decoded.get(key, "missing")
            assert isinstance(got, str) or np.array_equal(got, expected[2]), key


SYNONYMS = (TOKENS / "synonyms.json").read_bytes()
CODEBOOK = (TOKENS / "codebook.ckpt").read_bytes()


@settings(max_examples=200, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(["synonyms", "codebook"]), st.data())
def test_codebook_and_synonyms_read_as_a_valid_table_or_a_seit_error(which, data):
    """No checksum guards these (JSON; torch's zip), so a read that succeeds must at least be a valid table."""
    original = SYNONYMS if which == "synonyms" else CODEBOOK
    damaged = mutate(original, data.draw)
    with tempfile.TemporaryDirectory() as tmp, no_hang_and_bounded_memory():
        path = Path(tmp) / ("synonyms.json" if which == "synonyms" else "codebook.ckpt")
        path.write_bytes(damaged)
        try:
            table = read_synonyms(path, 391) if which == "synonyms" else read_codebook(path)
        except SeitError:
            return
    if which == "synonyms":
        assert table.shape[0] == 391 and table.min() >= 0 and table.max() < 391
    else:
        assert table.ndim == 2 and len(table) and table.dtype == np.float32
