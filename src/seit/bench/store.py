"""`seit bench store`: the store codec against SeiT's release layout, on the realistic token set."""

from __future__ import annotations

import argparse
from typing import Any

from seit.config import arg_type, at_least, non_negative, probability

DESCRIPTION = """\
token store codec vs. SeiT's release layout: bytes, bits/token, entropies, decode speed

Builds the realistic token set (seit.bench.tokens: spatially correlated grids, 391 codes by default),
writes it in the SeiT release layout (X-token.data.bin.gz + X-token.index.npy.gz, gzip level 9 as the
release's gzip headers show), encodes it with a seit codec fitted on the first --fit-samples samples,
and prints, measured in one run:
  - bytes and bits/token of both and their ratio; our bytes = encoded samples + codec state + codec
    params + --index-bytes per sample (what a store adds per sample to find it);
  - the tokens' empirical entropies (order 0 and given the neighbours the codec uses), in-sample
    and on held-out samples;
  - decode samples/s per core (CPU time of one thread, median over random batches of --batch-size
    indices) of both and the speed ratio: SeiT = slice + seit_release.decode_sample per sample, as its
    loader does (the one-off gunzip of the whole file is reported apart); ours = one decode_many call;
  - a table of alternative codecs on the same tokens, and with --sensitivity, the ratio at other
    --correlation values.

Examples:
  seit bench store
  seit bench store --samples 50000 --correlation 0.9 --json store.json
  seit bench store --sensitivity 0 0.5 0.9 1.0
"""

ALTERNATIVES = (
    ("raw", {}),
    ("zstd", {"dict_size": 0}),
    ("zstd", {}),
    ("ctx", {"neighbours": "left"}),
    ("ctx", {}),
    ("ctx-ans", {"list_size": 32, "pair_size": 32}),
    ("ctx-ans", {}),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from seit.bench.tokens import TokenSetConfig
    from seit.config import add_dataclass_args
    from seit.store.codec import CODECS, DEFAULT_CODEC

    add_dataclass_args(parser.add_argument_group("token set"), TokenSetConfig)
    b = parser.add_argument_group("benchmark")
    b.add_argument(
        "--codec", default=DEFAULT_CODEC, choices=sorted(CODECS), help=f"codec under test (default: {DEFAULT_CODEC})"
    )
    b.add_argument(
        "--fit-samples",
        type=arg_type(int, at_least(1)),
        default=4096,
        metavar="N",
        help="samples the codec is fitted on (default: 4096)",
    )
    b.add_argument(
        "--batch-size",
        type=arg_type(int, at_least(1)),
        default=256,
        metavar="N",
        help="indices per decoded batch (default: 256)",
    )
    b.add_argument(
        "--batches",
        type=arg_type(int, at_least(1)),
        default=60,
        metavar="N",
        help="random batches timed per codec (default: 60)",
    )
    b.add_argument(
        "--index-bytes",
        type=arg_type(int, non_negative),
        default=4,
        metavar="N",
        help="per-sample index cost of our store (default: 4)",
    )
    out = b.add_argument(
        "--output", "--out", dest="out", metavar="DIR",
        help="keep the SeiT files and our encoded samples here (default: temp dir)",
    )  # fmt: skip
    out.hidden_option_strings = ("--out",)  # the former spelling, left out of --help
    b.add_argument(
        "--alternatives",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure the alternative codecs (default: on)",
    )
    b.add_argument(
        "--sensitivity",
        type=arg_type(float, probability),
        nargs="+",
        default=[],
        metavar="CORR",
        help="also the ratio at these",
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    import dataclasses
    import tempfile
    import time
    from pathlib import Path

    import numpy as np

    from seit.bench.tokens import TokenSetConfig, generate_tokens
    from seit.config import from_args
    from seit.errors import SeitError
    from seit.interop.seit_release import MAX_ID

    cfg = from_args(TokenSetConfig, args)
    if cfg.codebook_size > MAX_ID + 1:
        raise SeitError(f"the SeiT release layout holds ids up to {MAX_ID}: use --codebook-size {MAX_ID + 1} or less")
    start = time.perf_counter()
    try:
        ids, labels = generate_tokens(cfg)
    except ValueError as e:
        raise SeitError(f"token set: {e}") from None
    generate_s = time.perf_counter() - start
    fit_n = min(args.fit_samples, len(ids))
    batches = np.random.default_rng(cfg.seed + 1).integers(0, len(ids), size=(args.batches, args.batch_size))
    print(
        f"token set: {len(ids)} samples of {'x'.join(map(str, cfg.grid))} ids over {cfg.codebook_size} codes, "
        f"correlation {cfg.correlation}, seed {cfg.seed} (generated in {generate_s:.1f} s); "
        f"codec fitted on the first {fit_n}"
    )
    with tempfile.TemporaryDirectory(prefix="seit-bench-store-") as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        seit = measure_seit_release(ids, labels, out, batches)
        ours = measure_store(args.codec, ids, labels, cfg.codebook_size, fit_n, batches, out)
    figures: dict[str, Any] = {
        "token_set": dataclasses.asdict(cfg),
        "generate_s": generate_s,
        "fit_samples": fit_n,
        "batch_size": args.batch_size,
        "seit_release": seit,
        "ours": ours,
        "ratio_bytes": ours["bytes"] / seit["bytes"],
        "ratio_decode_speed": ours["decode"]["samples_per_s"] / seit["decode"]["samples_per_s"],
        "entropy_bits_per_token": entropies(ids, fit_n, cfg.codebook_size, ours),
    }
    if args.alternatives:
        few = batches[: max(1, args.batches // 3)]
        figures["alternatives"] = []
        for name, options in ALTERNATIVES:
            alt = measure_codec(name, options, ids, cfg.codebook_size, fit_n, few, args.index_bytes)
            figures["alternatives"].append(alt | {"ratio_bytes": alt["bytes"] / seit["bytes"]})
    figures["sensitivity"] = [
        sensitivity(dataclasses.replace(cfg, correlation=c), args.codec, fit_n, args.index_bytes)
        for c in args.sensitivity
    ]
    report(figures)
    return figures


def store_bytes(codec, blobs: list[bytes], index_bytes: int) -> dict[str, int]:
    """Estimated bytes of a store holding these samples (encoded samples + codec state + codec params + a
    per-sample index), for comparing codecs without writing a store for each; the headline figure is a real store."""
    import json

    from seit.store.codec import encoded_bytes

    parts = {
        "samples": encoded_bytes(blobs),
        "state": len(codec.state()),
        "params_json": len(json.dumps(codec.params())),
        "index": index_bytes * len(blobs),
    }
    return parts | {"bytes": sum(parts.values())}


def measure_store(codec_name, ids, labels, codebook_size, fit_n, batches, out) -> dict[str, Any]:
    """Write a real seit store (tokens, labels, keys, codec state, manifest), time random batches through
    the reader (memory-mapped shards, batched decode) and count every byte of every file it holds."""
    import time

    import numpy as np

    from seit.store import StoreWriter, TokenStore

    path = out / "store"
    start = time.perf_counter()
    with StoreWriter(
        path, grid_shape=ids.shape[1:], codebook_size=codebook_size, codec=codec_name, fit_samples=fit_n
    ) as writer:
        keys = [str(i) for i in range(len(ids))]
        for s in range(0, len(ids), 4096):
            writer.append_batch(ids[s : s + 4096], labels[s : s + 4096], keys[s : s + 4096])
    write_s = time.perf_counter() - start
    files = {p.name: p.stat().st_size for p in sorted(path.iterdir()) if p.is_file()}
    store = TokenStore.open(path)
    store.get_batch(np.arange(len(ids)))  # first touch checks every shard's sha256; not part of the rate
    entry = store.manifest["codecs"][0]
    total = sum(files.values())
    kind = {
        "shards": sum(v for k, v in files.items() if k.startswith("shard-")),
        "codec_state": sum(v for k, v in files.items() if k.startswith("codec-")),
        "manifest": files.get("manifest.json", 0),
    }
    return {
        "codec": codec_name,
        "codec_params": entry["params"],
        "files": files,
        **kind,
        "bytes": total,
        "bits_per_token": 8 * total / ids.size,
        "write_samples_per_s": len(ids) / write_s,
        "decode": decode_rate(lambda idx: store.get_batch(idx)[0], batches, ids),
    }


def measure_seit_release(ids, labels, out, batches) -> dict[str, Any]:
    """Write the SeiT release files, read them back as its loader does, time per-sample decoding."""
    import gzip
    import io
    import time

    import numpy as np

    from seit.interop.seit_release import decode_sample, encode_stream
    from seit.utils.io import atomic_open

    stream, offsets = encode_stream(ids)
    data_path, index_path = out / "bench-token.data.bin.gz", out / "bench-token.index.npy.gz"
    start = time.perf_counter()
    for path, payload in ((data_path, stream), (index_path, _npy_bytes(offsets))):
        with atomic_open(path) as f, gzip.GzipFile(path.name[:-3], "wb", compresslevel=9, fileobj=f) as gz:
            gz.write(payload)
    write_s = time.perf_counter() - start
    start = time.process_time()
    data = gzip.decompress(data_path.read_bytes())
    gunzip_s = time.process_time() - start
    index = np.load(io.BytesIO(gzip.decompress(index_path.read_bytes())))
    view, numel, grid = memoryview(data), ids[0].size, ids.shape[1:]

    def decode(idx):
        return np.stack([decode_sample(view[index[i] : index[i + 1]], numel).reshape(grid) for i in idx])

    label_path = out / "bench-label.txt"
    label_path.write_text("".join(f"{int(y)}\n" for y in labels))
    sizes = {"data": data_path.stat().st_size, "index": index_path.stat().st_size, "labels": label_path.stat().st_size}
    return sizes | {
        "bytes": sum(sizes.values()),
        "bits_per_token": 8 * sum(sizes.values()) / ids.size,
        "gzip_level": 9,
        "write_s": write_s,
        "gunzip_whole_file_s": gunzip_s,
        "decode": decode_rate(decode, batches, ids),
    }


def measure_codec(name, options, ids, codebook_size, fit_n, batches, index_bytes) -> dict[str, Any]:
    """Fit on the prefix, encode everything, reload from params + state as a reader would, time decoding."""
    import time

    import numpy as np

    from seit.bench.entropy import entropy
    from seit.store.codec import codec_class

    cls, grid = codec_class(name), ids.shape[1:]
    start = time.perf_counter()
    codec = cls.fit(ids[:fit_n], grid, codebook_size, **options)
    fit_s = time.perf_counter() - start
    start = time.process_time()
    blobs = codec.encode_many(ids)
    encode_s = time.process_time() - start
    start = time.perf_counter()
    reader = cls.load(grid, codebook_size, codec.params(), codec.state())
    load_s = time.perf_counter() - start
    sizes = store_bytes(codec, blobs, index_bytes)
    result = {"codec": name, "options": options, "codec_params": codec.params()} | sizes
    result |= {
        "bits_per_token": 8 * sizes["bytes"] / ids.size,
        "fit_s": fit_s,
        "encode_samples_per_s": len(ids) / encode_s,
        "load_s": load_s,
        "decode": decode_rate(lambda idx: reader.decode_many([blobs[i] for i in idx]), batches, ids),
    }
    model = getattr(codec, "model", None)
    if model is not None and fit_n < len(ids):  # what the transform hands to the entropy coder, held-out samples
        held = ids[fit_n:].reshape(len(ids) - fit_n, codec.rows, codec.cols)
        counts = np.zeros(model.alphabet, dtype=np.int64)
        for i in range(0, len(held), 256):
            counts += np.bincount(model.forward(held[i : i + 256]).ravel(), minlength=model.alphabet)
        result["rank_entropy_held_out"] = entropy(counts)
    return result


def decode_rate(decode, batches, truth) -> dict[str, float]:
    """Median CPU time per batch (one thread) -> samples/s per core; also wall clock. Checks every batch."""
    import time

    import numpy as np

    for idx in batches[:2]:  # warm-up: first-touch of tables and buffers
        decode(idx)
    cpu, wall = [], []
    for idx in batches:
        c, w = time.process_time(), time.perf_counter()
        decode(idx)
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    for idx in batches:
        if not np.array_equal(decode(idx), truth[idx]):
            raise AssertionError("decoded tokens differ from the originals")
    size = batches.shape[1]
    return {
        "samples_per_s": size / float(np.median(cpu)),
        "samples_per_s_wall": size / float(np.median(wall)),
        "batch_ms_cpu_p10": 1e3 * float(np.quantile(cpu, 0.1)),
        "batch_ms_cpu_p90": 1e3 * float(np.quantile(cpu, 0.9)),
    }


def entropies(ids, fit_n, codebook_size, ours) -> dict[str, Any]:
    """Token entropies (fit prefix in-sample, the rest held out) next to what our codec spends."""
    from seit.bench.entropy import token_entropies

    held = ids[fit_n:] if fit_n < len(ids) else ids
    table = token_entropies(ids[:fit_n], held, codebook_size)
    table["ours"] = {"held_out": ours["bits_per_token"]}
    if "rank_entropy_held_out" in ours:
        table["ranks (ours, order 0)"] = {"held_out": ours["rank_entropy_held_out"]}
    return table


def sensitivity(cfg, codec_name, fit_n, index_bytes) -> dict[str, Any]:
    """Bytes only (no speed) at another setting of the token set."""
    import gzip

    import numpy as np

    from seit.bench.entropy import token_entropies
    from seit.bench.tokens import generate_tokens
    from seit.interop.seit_release import encode_stream
    from seit.store.codec import codec_class

    ids, _ = generate_tokens(cfg)
    stream, offsets = encode_stream(ids)
    seit_bytes = len(gzip.compress(stream, 9)) + len(gzip.compress(_npy_bytes(offsets), 9))
    codec = codec_class(codec_name).fit(ids[:fit_n], ids.shape[1:], cfg.codebook_size)
    ours = store_bytes(codec, codec.encode_many(ids), index_bytes)["bytes"]
    ent = token_entropies(ids[:fit_n], ids[fit_n:] if fit_n < len(ids) else ids, cfg.codebook_size)
    return {
        "correlation": cfg.correlation,
        "seit_bits_per_token": 8 * seit_bytes / ids.size,
        "ours_bits_per_token": 8 * ours / ids.size,
        "ratio_bytes": ours / seit_bytes,
        "H(X)": ent["H(X)"]["held_out"],
        "H(X|left,upper)_held_out": ent["H(X|left,upper)"]["held_out"],
        "same_as_left": float(np.mean(ids[:, :, 1:] == ids[:, :, :-1])),
    }


def _npy_bytes(array) -> bytes:
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def report(f: dict[str, Any]) -> None:
    seit, ours = f["seit_release"], f["ours"]
    rows = [
        ("SeiT layout + gzip -9", seit["bytes"], seit["bits_per_token"], seit["decode"]),
        (f"seit store ({ours['codec']})", ours["bytes"], ours["bits_per_token"], ours["decode"]),
    ]
    print(f"\n{'':26s} {'bytes':>12s} {'bits/token':>11s} {'decode samples/s/core':>22s} {'(wall)':>9s}")
    for label, size, bits, dec in rows:
        print(f"{label:26s} {size:12,d} {bits:11.3f} {dec['samples_per_s']:22,.0f} {dec['samples_per_s_wall']:9,.0f}")
    speed = f"x{f['ratio_decode_speed']:.2f}"
    print(f"{'ratio (seit / SeiT)':26s} {f['ratio_bytes']:12.3f} {'':11s} {speed:>22s}")
    print(
        f"our store: shards {ours['shards']:,} (tokens, offsets, labels, keys) + codec state {ours['codec_state']:,} "
        f"+ manifest {ours['manifest']:,}; SeiT: data {seit['data']:,} + index {seit['index']:,} + labels "
        f"{seit['labels']:,}; SeiT gunzip of the whole file {seit['gunzip_whole_file_s']:.2f} s (not in its rate); "
        f"our store written at {ours['write_samples_per_s']:,.0f} samples/s (fit + encode + write)"
    )
    print("\nentropy (bits/token)        in-sample   held-out")
    for name, v in f["entropy_bits_per_token"].items():
        ins = f"{v['in_sample']:.3f}" if "in_sample" in v else ""
        print(f"  {name:26s} {ins:>9s} {v['held_out']:10.3f}")
    if "alternatives" in f:
        print("\ncodec-level comparison (encoded samples + state + a 4-byte/sample index estimate, no labels):")
        print(f"{'alternative':34s} {'bytes':>12s} {'ratio':>7s} {'bits/token':>11s} {'decode samples/s/core':>22s}")
        print(f"{'SeiT layout + gzip -9 (baseline)':34s} {seit['bytes']:12,d} {1:7.3f} {seit['bits_per_token']:11.3f}")
        for a in f["alternatives"]:
            label = a["codec"] + "".join(f" {k}={v}" for k, v in a["options"].items())
            print(
                f"{label:34s} {a['bytes']:12,d} {a['ratio_bytes']:7.3f} {a['bits_per_token']:11.3f} "
                f"{a['decode']['samples_per_s']:22,.0f}"
            )
    if f["sensitivity"]:
        head = ("correlation", "same as left", "H(X)", "H(X|l,u)", "SeiT bits", "ours bits", "ratio")
        print("\n" + " ".join(f"{h:>{w}s}" for h, w in zip(head, (11, 13, 7, 9, 10, 10, 7))))
        for s in f["sensitivity"]:
            print(
                f"{s['correlation']:11.2f} {s['same_as_left']:13.3f} {s['H(X)']:7.3f} "
                f"{s['H(X|left,upper)_held_out']:9.3f} {s['seit_bits_per_token']:10.3f} "
                f"{s['ours_bits_per_token']:10.3f} {s['ratio_bytes']:7.3f}"
            )
