"""A store's files, local and through fsspec's memory filesystem (with a wrapper that drops reads): names kept
inside the store, sizes and bounds with their exact messages, byte ranges, memory maps, pickling, and the retry
of remote reads (waits, warnings, the final error) - the mutation pass's tests for store/files.py; no servers,
no real waits: the whole file runs in about a second."""

import logging
import pickle
import re
import uuid
from pathlib import Path

import fsspec
import pytest

from seit.store import files as files_module
from seit.store.errors import StoreError
from seit.store.files import LOCAL_MAX_GAP, REMOTE_MAX_GAP, StoreFiles, inside, is_url, local_path

DATA = bytes(range(100))


def refused(message: str):
    return pytest.raises(StoreError, match=f"^{re.escape(message)}$")


def missing(where: str):
    return refused(
        f"{where}: missing file listed in the store manifest; the store is incomplete (copy it again, or re-create it)"
    )


# ---- names and paths -----------------------------------------------------------------------------------
def test_urls_are_told_from_local_paths():
    assert is_url("s3://bucket/store") and is_url("memory://s") and is_url("a://")
    assert not is_url("/data/store") and not is_url("file:///data/store") and not is_url("store")
    assert not is_url(Path("/data/store"))
    assert local_path("file:///data/store") == Path("/data/store")
    assert local_path("/data/file://x") == Path("/data/file://x") and local_path(Path("rel")) == Path("rel")


def test_a_name_inside_the_store_is_its_path(tmp_path):
    (tmp_path / "a.tok").write_bytes(b"x")
    (tmp_path / "link.tok").symlink_to(tmp_path / "a.tok")  # a link to another file of the store is fine
    assert inside(tmp_path, "a.tok", "w") == tmp_path / "a.tok"
    assert inside(str(tmp_path), "link.tok", "w") == tmp_path / "link.tok"
    assert inside(tmp_path, "new.tok", "w") == tmp_path / "new.tok"  # need not exist yet
    (tmp_path.parent / f"{tmp_path.name}-alias").symlink_to(tmp_path)  # a store reached through a link
    alias = tmp_path.parent / f"{tmp_path.name}-alias"
    assert inside(alias, "link.tok", "w") == alias / "link.tok"


def test_a_name_that_leaves_the_store_is_refused(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    (tmp_path / "secret").write_bytes(b"x")
    (store / "out.tok").symlink_to(tmp_path / "secret")
    (store / "self.tok").symlink_to(store)
    (tmp_path / "store2").mkdir()
    (store / "near.tok").symlink_to(tmp_path / "store2" / "f")  # a sibling whose name starts like the store's
    for name, real in [("out.tok", tmp_path / "secret"), ("self.tok", store), ("near.tok", tmp_path / "store2" / "f")]:
        with refused(f"w: {name!r} resolves outside the store ({real}); a store's files must be in it"):
            inside(store, name, "w")
    with refused("w: invalid file name '../secret' (corrupt or hand-edited file)"):
        inside(store, "../secret", "w")


# ---- local files ---------------------------------------------------------------------------------------
@pytest.fixture
def local(tmp_path):
    (tmp_path / "f.bin").write_bytes(DATA)
    (tmp_path / "empty.bin").write_bytes(b"")
    return StoreFiles(tmp_path)


def test_local_files(local, tmp_path):
    assert local.is_local and local.fs is None and local.max_gap == LOCAL_MAX_GAP == 128 << 10
    assert (local.url, local.root, local.storage_options) == (str(tmp_path), str(tmp_path), {})
    assert StoreFiles(f"file://{tmp_path}/").root == str(tmp_path) and StoreFiles(f"file://{tmp_path}").is_local
    assert StoreFiles(f"{tmp_path}/").where("f.bin") == f"{tmp_path}/f.bin" == local.where("f.bin")
    assert StoreFiles(tmp_path / "storeX").where("f.bin") == f"{tmp_path}/storeX/f.bin"
    assert local.exists("f.bin") and not local.exists("g.bin")
    assert local.listdir() == ["empty.bin", "f.bin"] and StoreFiles(tmp_path / "none").listdir() == []
    (tmp_path / "plain").write_bytes(b"")
    assert StoreFiles(tmp_path / "plain").listdir() == []  # a file, not a store directory
    assert local.size("f.bin") == 100 and local.size("empty.bin") == 0
    with refused(f"{tmp_path}/f.bin/x: invalid file name 'f.bin/x' (corrupt or hand-edited file)"):
        local.exists("f.bin/x")


def test_a_local_file_is_read_whole_up_to_its_bound(local, tmp_path):
    assert local.read_bytes("f.bin", 100) == DATA
    with refused(f"{tmp_path}/f.bin: 100 bytes, more than the 99 such a file can hold (corrupt?)"):
        local.read_bytes("f.bin", 99)
    with missing(f"{tmp_path}/g.bin"):
        local.read_bytes("g.bin", 100)
    with missing(f"{tmp_path}/g.bin"):
        local.size("g.bin")


def test_local_byte_ranges(local, tmp_path):
    assert local.read_ranges("f.bin", [90, 0, 5], [100, 3, 5]) == [DATA[90:], DATA[:3], b""]
    assert local.read_ranges("g.bin", [], []) == []  # nothing asked: the file is not even opened
    with refused(f"{tmp_path}/f.bin: read 10 bytes at 90, expected 11 (truncated file?)"):
        local.read_ranges("f.bin", [0, 90], [1, 101])
    with missing(f"{tmp_path}/g.bin"):
        local.read_ranges("g.bin", [0], [1])


def test_a_local_file_is_memory_mapped_read_only(local, tmp_path):
    mapped = local.map("f.bin")
    assert mapped[:] == DATA
    with pytest.raises(TypeError):
        mapped[0] = 1
    with missing(f"{tmp_path}/g.bin"):
        local.map("g.bin")
    with refused(f"{tmp_path}/empty.bin: empty file (truncated?); re-copy the store"):
        local.map("empty.bin")


def test_local_files_survive_pickling(local, tmp_path):
    assert local.__getstate__() == {"url": str(tmp_path), "storage_options": {}}
    back = pickle.loads(pickle.dumps(local))
    assert back.is_local and back.read_bytes("f.bin", 100) == DATA


# ---- remote files --------------------------------------------------------------------------------------
@pytest.fixture
def remote():
    fs = fsspec.filesystem("memory")
    root = f"/files-test-{uuid.uuid4().hex}"
    fs.pipe({f"{root}/store/f.bin": DATA, f"{root}/store/b.bin": b"b", f"{root}/store/sub/c.bin": b"c"})
    fs.pipe(f"{root}/plain", b"")
    yield StoreFiles(f"memory://{root}/store/"), root
    fs.rm(root, recursive=True)


def test_remote_files(remote):
    files, root = remote
    assert not files.is_local and files.max_gap == REMOTE_MAX_GAP == 4 << 20
    assert files.root == f"{root}/store" and files.where("f.bin") == f"memory://{root}/store/f.bin"
    assert files.exists("f.bin") and not files.exists("g.bin")
    assert files.listdir() == ["b.bin", "f.bin", "sub"]
    assert StoreFiles(f"memory://{root}/none").listdir() == [] and StoreFiles(f"memory://{root}/plain").listdir() == []
    assert files.size("f.bin") == 100 and files.read_bytes("f.bin", 100) == DATA
    assert files.read_ranges("f.bin", [90, 0], [100, 3]) == [DATA[90:], DATA[:3]]
    with refused(f"memory://{root}/store/../x: invalid file name '../x' (corrupt or hand-edited file)"):
        files.exists("../x")
    with refused(f"memory://{root}/store/f.bin: 100 bytes, more than the 99 such a file can hold (corrupt?)"):
        files.read_bytes("f.bin", 99)
    with missing(f"memory://{root}/store/g.bin"):
        files.size("g.bin")
    with missing(f"memory://{root}/store/g.bin"):
        files.read_ranges("g.bin", [0], [1])


def test_remote_folders_listed_with_a_final_slash_are_named_without_it(remote, monkeypatch):
    files, _ = remote
    listing = lambda root, detail: [f"{root}/subX/", f"{root}/a.bin"]  # noqa: E731 - as HTTP index pages list folders
    monkeypatch.setattr(files.fs, "ls", listing)
    assert files.listdir() == ["a.bin", "subX"]


def test_remote_files_survive_pickling_with_a_new_filesystem(remote, monkeypatch):
    files, root = remote
    files.storage_options = {"skip_instance_cache": True}
    state = files.__getstate__()
    assert state == {"url": f"memory://{root}/store/", "storage_options": {"skip_instance_cache": True}}
    back = pickle.loads(pickle.dumps(files))
    assert back.fs is not files.fs and back.root == files.root and back.storage_options == files.storage_options
    assert back.read_ranges("f.bin", [1], [4]) == [DATA[1:4]]


def test_storage_options_reach_the_filesystem(monkeypatch):
    seen = []

    def url_to_fs(url, **options):
        seen.append((url, options))
        return fsspec.filesystem("memory"), "bucket/boX//"

    monkeypatch.setattr(fsspec.core, "url_to_fs", url_to_fs)
    files = StoreFiles("memory://bucket/dir", {"anon": True})
    assert seen == [("memory://bucket/dir", {"anon": True})] and files.root == "bucket/boX"
    assert files.storage_options == {"anon": True} and StoreFiles("memory://x").storage_options == {}


@pytest.mark.parametrize(
    ("url", "fix"),
    [
        ("gs://b/x", "pip install 'seit[gcs]'"),
        ("gcs://b/x", "pip install 'seit[gcs]'"),
        ("gs://b/from-http://x", "pip install 'seit[gcs]'"),  # the protocol is what precedes the first ://
        ("s3://b/x", "pip install 'seit[s3]'"),
        ("s3a://b/x", "pip install 'seit[s3]'"),
        ("http://h/x", "pip install 'seit[http]'"),
        ("https://h/x", "pip install 'seit[http]'"),
        ("sftp://h/x", "install the fsspec filesystem for sftp://"),
    ],
)
def test_a_missing_filesystem_package_names_what_to_install(url, fix, monkeypatch):
    def url_to_fs(url, **options):
        raise ImportError("No module named 'thing'")

    monkeypatch.setattr(fsspec.core, "url_to_fs", url_to_fs)
    protocol = url.split("://")[0]
    with refused(f"{url}: reading {protocol}:// stores needs a package: {fix} (No module named 'thing')") as caught:
        StoreFiles(url)
    assert caught.value.__suppress_context__


# ---- retries -------------------------------------------------------------------------------------------
class Flaky:
    """A filesystem that fails its next ``fail`` calls of ``method`` (``short``: returns them cut short)."""

    def __init__(self, fs, method, fail, error=None, short=False):
        self.fs, self.method, self.fail, self.error, self.short, self.calls = fs, method, fail, error, short, 0

    def __getattr__(self, name):
        real = getattr(self.fs, name)
        if name != self.method:
            return real

        def call(*args, **kwargs):
            self.calls += 1
            if self.calls <= self.fail and not self.short:
                raise self.error or ConnectionError(f"dropped {self.calls}")
            out = real(*args, **kwargs)
            if self.calls <= self.fail:
                return [b[:-1] for b in out] if isinstance(out, list) else out[:-1]
            return out

        return call


@pytest.fixture
def waits(monkeypatch):
    slept = []
    monkeypatch.setattr(files_module.time, "sleep", slept.append)
    return slept


# each remote read: the filesystem method it calls, the read, what it returns
READS = [
    ("size", lambda f: f.size("f.bin"), 100),
    ("cat_file", lambda f: f.read_bytes("f.bin", 100), DATA),
    ("cat_ranges", lambda f: f.read_ranges("f.bin", [2, 50], [4, 53]), [DATA[2:4], DATA[50:53]]),
]


@pytest.mark.parametrize(("method", "read", "want"), READS)
def test_a_dropped_remote_read_is_tried_again_after_growing_waits(remote, waits, caplog, method, read, want):
    files, root = remote
    files.fs = flaky = Flaky(files.fs, method, 2)
    with caplog.at_level(logging.WARNING, logger="seit.store.files"):
        assert read(files) == want
    assert flaky.calls == 3 and waits == [0.2, 0.4]
    where = f"memory://{root}/store/f.bin"
    assert caplog.messages == [
        f"{where}: read failed (ConnectionError: dropped 1); trying again in 0.2s",
        f"{where}: read failed (ConnectionError: dropped 2); trying again in 0.4s",
    ]


@pytest.mark.parametrize(("method", "read", "want"), READS)
def test_a_remote_read_that_keeps_failing_is_a_store_error(remote, waits, method, read, want):
    files, root = remote
    files.fs = flaky = Flaky(files.fs, method, 3)
    with refused(
        f"memory://{root}/store/f.bin: read failed 3 times, last with ConnectionError: dropped 3; "
        "check the connection and the storage, then run again"
    ) as caught:
        read(files)
    assert flaky.calls == 3 and waits == [0.2, 0.4]
    assert isinstance(caught.value.__cause__, ConnectionError) and str(caught.value.__cause__) == "dropped 3"


@pytest.mark.parametrize(
    ("method", "read", "want", "short"),
    [
        ("cat_file", lambda f: f.read_bytes("f.bin", 100), DATA, "read 99 bytes at 0, expected 100"),
        (
            "cat_ranges",
            lambda f: f.read_ranges("f.bin", [0, 10], [5, 20]),
            [DATA[:5], DATA[10:20]],
            "read 4 bytes at 0, expected 5",
        ),
    ],
)
def test_a_short_remote_read_is_tried_again(remote, waits, method, read, want, short):
    files, root = remote
    files.fs = Flaky(files.fs, method, 1, short=True)
    assert read(files) == want and waits == [0.2]
    files.fs = flaky = Flaky(files.fs.fs, method, 3, short=True)
    with refused(
        f"memory://{root}/store/f.bin: read failed 3 times, last with StoreError: memory://{root}/store/f.bin: "
        f"{short} (truncated file?); check the connection and the storage, then run again"
    ):
        read(files)
    assert flaky.calls == 3


@pytest.mark.parametrize(("method", "read", "want"), READS)
def test_a_file_missing_remotely_is_not_tried_again(remote, waits, method, read, want):
    files, root = remote
    files.fs = flaky = Flaky(files.fs, method, 3, error=FileNotFoundError("gone"))
    with missing(f"memory://{root}/store/f.bin"):
        read(files)
    assert flaky.calls == 1 and waits == []


def test_the_remote_size_is_an_int(remote, monkeypatch):
    files, _ = remote
    monkeypatch.setattr(files.fs, "size", lambda path: 100.0)
    size = files.size("f.bin")
    assert size == 100 and type(size) is int
