"""Remote stores on real servers: a local S3 (moto's server) through s3fs and an HTTP server with byte ranges
through fsspec's http filesystem; training, `seit store verify`, dropped connections, missing extras.

Both servers listen on 127.0.0.1 only, on a free port, and stop when the module's tests end. The packages are
plain imports (no skip): CI installs them from requirements/ci.txt, so a missing one fails the suite.
"""

import http.server
import importlib
import re
import socket
import sys
import threading
from pathlib import Path

import aiohttp  # noqa: F401  (fsspec's http filesystem)
import numpy as np
import pytest
import s3fs
from moto.server import ThreadedMotoServer

import seit.store.files
from seit.cli import main
from seit.runtime.metrics import read_metrics
from seit.store import StoreError, TokenStore
from seit.store.files import StoreFiles

FSSPEC_CLASSES = importlib.import_module("fsspec.registry")._registry  # protocol -> class already imported
TINY = ["--model", "deit_tiny_token_4", "--embed-dim", "32", "--depth", "2", "--num-heads", "2"]
TRAIN = ["--num-workers", "0", "--no-tensorboard", "--log-every", "1", "--batch-size", "16", "--unscale-lr"]
TRAIN += ["--epochs", "1", "--warmup-epochs", "1", "--max-steps", "3", "--ckpt-every", "0", "--streaming"]


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files with `Range: bytes=a-b` (206); drops the connection halfway through the body of the next
    ``server.faults`` file reads, and answers the next ``server.short_bodies`` with half the bytes asked for."""

    timeout = 10  # a stalled client cannot hold a handler thread longer than this

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            return super().do_GET()  # directory listings: fsspec's ls parses their links
        data = path.read_bytes()
        match = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
        if match:
            start, end = int(match[1]), min(int(match[2]) + 1, len(data))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
            data = data[start:end]
        else:
            self.send_response(200)
        with self.server.lock:
            drop, short = self.server.faults > 0, self.server.short_bodies > 0
            self.server.faults -= drop
            self.server.short_bodies -= short
        if short:  # a well-formed response with half the asked bytes
            data = data[: len(data) // 2]
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if drop:  # half the promised bytes, then the connection closes
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(data)


@pytest.fixture(scope="module")
def local_stores(tmp_path_factory, class_token_store):
    root = tmp_path_factory.mktemp("stores")
    return class_token_store(root / "train", 64, seed=0), class_token_store(root / "val", 20, seed=1)


class QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # a client that hung up on a dropped connection: the server's own traceback is no seit output


@pytest.fixture(scope="module")
def http_server(local_stores):
    root = local_stores[0].parent
    handler = lambda *a, **kw: RangeHandler(*a, directory=str(root), **kw)  # noqa: E731
    server = QuietServer(("127.0.0.1", 0), handler)
    server.daemon_threads, server.lock = True, threading.Lock()
    server.faults = server.short_bodies = 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def s3_endpoint(local_stores):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,  # botocore (and so s3fs) read it: no flag needed to reach the server
            "NO_PROXY": "127.0.0.1",
        }.items():
            mp.setenv(key, value)
        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        fs.mkdir("tokens")
        fs.put(str(local_stores[0]), "tokens/train", recursive=True)
        yield endpoint
        s3fs.S3FileSystem.clear_instance_cache()
    server.stop()


@pytest.fixture(params=["s3", "http"])
def remote_url(request):
    if request.param == "s3":
        request.getfixturevalue("s3_endpoint")
        return "s3://tokens/train"
    host, port = request.getfixturevalue("http_server").server_address
    return f"http://{host}:{port}/train"


@pytest.fixture(scope="module")
def local_losses(local_stores, tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    args = ["train", "--store", str(local_stores[0]), "--val-store", str(local_stores[1]), "--output", str(out)]
    assert main([*args, *TINY, *TRAIN]) == 0
    return losses(out)


def losses(out):
    return [(r["step"], r["loss"]) for r in read_metrics(Path(out) / "metrics.jsonl", "train")]


def test_remote_store_reads_trains_and_verifies(local_stores, remote_url, local_losses, tmp_path, capsys):
    local, far = TokenStore.open(local_stores[0]), TokenStore.open(remote_url)
    picks = [63, 0, 17, 18, 0]
    np.testing.assert_array_equal(far.get_batch(picks)[0], local.get_batch(picks)[0])
    np.testing.assert_array_equal(far.labels, local.labels)
    assert main(["store", "verify", remote_url]) == 0
    assert "ok: 64 samples" in capsys.readouterr().out
    out = tmp_path / "run"
    args = ["train", "--store", remote_url, "--val-store", str(local_stores[1]), "--output", str(out)]
    assert main([*args, *TINY, *TRAIN, "--verify-shards"]) == 0
    assert losses(out) == local_losses and len(local_losses) == 3  # the same batches as from the local copy


def shard_name(store):
    return sorted(p.name for p in Path(store).glob("shard-*.tok"))[0]


def test_http_connection_dropped_mid_read_is_retried(local_stores, http_server, monkeypatch):
    monkeypatch.setattr(seit.store.files, "REMOTE_RETRY_WAIT_S", 0.0)
    host, port = http_server.server_address
    files = StoreFiles(f"http://{host}:{port}/train")
    name = shard_name(local_stores[0])
    data = (local_stores[0] / name).read_bytes()
    http_server.faults = 1
    assert files.read_ranges(name, [10, 300], [250, 700]) == [data[10:250], data[300:700]]
    http_server.faults = 1
    assert files.read_bytes(name, len(data)) == data
    http_server.short_bodies = 1
    assert files.read_ranges(name, [40], [900]) == [data[40:900]]
    assert http_server.faults == http_server.short_bodies == 0  # every fault was met, and each read tried again


def test_http_connection_that_keeps_dropping_is_a_store_error(local_stores, http_server, monkeypatch, capsys):
    monkeypatch.setattr(seit.store.files, "REMOTE_RETRY_WAIT_S", 0.0)
    host, port = http_server.server_address
    url = f"http://{host}:{port}/train"
    name = shard_name(local_stores[0])
    try:
        http_server.faults = 1000
        with pytest.raises(StoreError, match=rf"{name}: read failed 3 times, last with \w+"):
            StoreFiles(url).read_ranges(name, [0], [500])
        assert main(["store", "verify", url]) == 1  # the CLI: one line naming the file, no traceback
        err = capsys.readouterr().err
        assert f"{url}/manifest.json: read failed 3 times" in err and "Traceback" not in err  # its first read
        http_server.faults, http_server.short_bodies = 0, 1000
        with pytest.raises(StoreError, match=rf"{name}: read failed 3 times.* read 250 bytes at 0, expected 500"):
            StoreFiles(url).read_ranges(name, [0], [500])
    finally:
        http_server.faults = http_server.short_bodies = 0


@pytest.mark.parametrize(("url", "module", "extra"), [("s3://b/x", "s3fs", "s3"), ("gs://b/x", "gcsfs", "gcs")])
def test_a_missing_remote_backend_names_the_extra_to_install(url, module, extra, monkeypatch):
    protocol = url.split("://")[0]
    monkeypatch.delitem(FSSPEC_CLASSES, protocol, raising=False)  # forget a class already imported
    monkeypatch.setitem(sys.modules, module, None)  # as if the package were not installed
    with pytest.raises(StoreError, match=re.escape(f"pip install 'seit[{extra}]'")):
        StoreFiles(url)


def test_a_missing_http_backend_names_the_extra_to_install(monkeypatch):
    monkeypatch.delitem(FSSPEC_CLASSES, "https", raising=False)
    monkeypatch.setitem(sys.modules, "fsspec.implementations.http", None)  # what a missing aiohttp leads to
    with pytest.raises(StoreError, match=re.escape("pip install 'seit[http]'")):
        StoreFiles("https://example.invalid/tokens")


def test_servers_listen_on_loopback_only(http_server, s3_endpoint):
    assert http_server.server_address[0] == "127.0.0.1" and s3_endpoint.startswith("http://127.0.0.1:")
