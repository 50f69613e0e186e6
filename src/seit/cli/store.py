"""`seit store ...`: inspect, check and convert token stores (thin shell over seit.store / seit.interop)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any

from seit.cli import emit_json
from seit.config import (
    Checked,
    ResumesInPlace,
    add_dataclass_args,
    at_least,
    each,
    field,
    from_args,
    json_field,
    non_negative,
    positive,
    resume_in_place_field,
)
from seit.store.codec import CODECS, DEFAULT_CODEC

STORE_HELP = "token store: a directory, or any fsspec URL (file://, s3://, gs://, https://, ...)"


@dataclass
class InfoConfig(Checked):
    store: str = field(help=STORE_HELP, positional=True)
    json: str | None = json_field("the figures instead of a table")


@dataclass
class StatsConfig(Checked):
    store: str = field(help=STORE_HELP, positional=True)
    json: str | None = json_field("the figures (incl. the full code histogram)")
    png: str | None = field(None, help="also write a PNG of the code usage to this path", metavar="PATH")
    max_samples: int | None = field(
        None, help="decode a seeded random subset of this many samples (default: all)", metavar="N", check=at_least(1)
    )
    top: int = field(10, help="list this many most used codes in the table", check=non_negative)


@dataclass
class VerifyConfig(Checked):
    store: str = field(help=STORE_HELP, positional=True)
    json: str | None = json_field("the summary")


@dataclass
class ImportSeitConfig(ResumesInPlace):
    out: str = field(help="output store directory (new, or an interrupted import with --resume)", positional=True)
    prefix: str | None = field(
        None,
        help="PREFIX of PREFIX-token.data.bin.gz, PREFIX-token.index.npy.gz, PREFIX-label.txt; codebook.ckpt "
        "and synonyms.json are taken from the same directory when present",
        metavar="PREFIX",
    )
    tokens: str | None = field(None, help="X-token.data.bin.gz (gzip of the escaped id byte stream)", metavar="FILE")
    index: str | None = field(
        None, help="X-token.index.npy.gz (default: derived from --tokens as SeiT does)", metavar="FILE"
    )
    labels: str | None = field(
        None, help="X-label.txt, one class id per line (default: unlabelled, -1)", metavar="FILE"
    )
    codebook: str | None = field(
        None, help="codebook.ckpt: torch.save of a float tensor [K, D] (weights_only load)", metavar="FILE"
    )
    synonyms: str | None = field(None, help='synonyms.json: {"id": [ids, most similar first]}', metavar="FILE")
    grid: tuple[int, ...] = field((32, 32), help="token grid shape of every sample", check=each(at_least(1)))
    codebook_size: int | None = field(
        None, help="number of codes K, when no --codebook is given", metavar="K", check=at_least(1)
    )
    class_names: str | None = field(None, help="text file with one class name per line, in label order", metavar="FILE")
    codec: str = field(
        DEFAULT_CODEC,
        help="codec of the store (every sample decodes on its own; see docs/store-codec.md)",
        choices=tuple(sorted(CODECS)),
    )
    shard_mb: float = field(128.0, help="target shard size in MB", metavar="MB", check=positive)
    resume: str | None = resume_in_place_field("OUT")

    output_flag = "OUT"


@dataclass
class ExportSeitConfig(Checked):
    store: str = field(help=STORE_HELP, positional=True)
    out_prefix: str = field(
        help="writes OUT_PREFIX-token.data.bin.gz, OUT_PREFIX-token.index.npy.gz, OUT_PREFIX-label.txt, and "
        "codebook.ckpt / synonyms.json beside them when the store has them",
        positional=True,
    )
    overwrite: bool = field(False, help="replace existing files")


@dataclass
class PruneConfig(ResumesInPlace):
    store: str = field(help=STORE_HELP, positional=True)
    out: str = field(help="output store directory (new, or an interrupted prune with --resume)", positional=True)
    codes_from: str | None = field(
        None,
        help="map onto the codebook of this (pruned) train store instead; codes it lacks go to the nearest "
        "kept code (cosine similarity)",
        metavar="TRAIN_STORE",
    )
    synonyms: int | None = field(
        None,
        help="columns of the rebuilt synonym table (default: as many as the source's, none if it has none)",
        check=at_least(1),
    )
    codec: str | None = field(None, help="codec of OUT (default: the source's)", metavar="NAME")
    shard_mb: float = field(128.0, help="target shard size in MB", metavar="MB", check=positive)
    resume: str | None = resume_in_place_field("OUT")

    output_flag = "OUT"


COMMANDS: dict[str, tuple[type, str, str]] = {
    "info": (
        InfoConfig,
        "sizes and settings of a store (reads the manifest only)",
        "Samples, classes, grid, codebook, codec, shards, bytes per sample, bits per token, creation info.\n\n"
        "example:\n  seit store info data/imagenet-train\n  seit store info s3://bucket/imagenet-train --json",
    ),
    "stats": (
        StatsConfig,
        "decode a store: code usage histogram, order-0 entropy, label counts",
        "Everything `info` shows, plus the code usage histogram over all (or --max-samples) samples, the\n"
        "number of codes used, the order-0 entropy in bits/token next to the stored bits/token, and the\n"
        "samples per class.\n\n"
        "example:\n  seit store stats data/imagenet-val --png code-usage.png\n"
        "  seit store stats data/imagenet-train --max-samples 100000 --json > stats.json",
    ),
    "verify": (
        VerifyConfig,
        "check every checksum and decode every sample",
        "Checks the manifest, the sha256 of every file, every shard's index, keys and labels, and decodes\n"
        "every sample (ids inside the codebook, right grid). Exit status 1 with a list of the problems, each\n"
        "naming its file (and sample), if anything is wrong.\n\n"
        "example:\n  seit store verify data/imagenet-train",
    ),
    "prune": (
        PruneConfig,
        "keep only the codes a store uses (SeiT's 8192 -> 391), or map onto another store's codes",
        "Writes OUT: STORE with its ids renumbered onto the codes it uses, in tokenizer-id order; the codebook\n"
        "keeps those rows and code_ids records which tokenizer code each new id is. With --codes-from, the ids\n"
        "are mapped onto that train store's codes instead (the same mapping `seit tokenize --codes-from` and\n"
        "evaluation on images use) and the number of tokens mapped to a nearest code is reported.\n"
        "The synonym table is rebuilt for the new ids. STORE is not changed.\n\n"
        "examples:\n  seit store prune tokens/train-full tokens/train\n"
        "  seit store prune tokens/val-full tokens/val --codes-from tokens/train",
    ),
    "import-seit": (
        ImportSeitConfig,
        "convert SeiT's released token files into a store",
        "Reads the SeiT release layout (X-token.data.bin.gz, X-token.index.npy.gz, X-label.txt, codebook.ckpt,\n"
        "synonyms.json) and writes a token store at OUT. Sample keys are the sample numbers 0..N-1.\n\n"
        "examples:\n  seit store import-seit --prefix seit/imagenet-train data/imagenet-train\n"
        "  seit store import-seit --tokens seit/imagenet-train-token.data.bin.gz --grid 32 32 \\\n"
        "      --labels seit/imagenet-train-label.txt --codebook seit/codebook.ckpt \\\n"
        "      --synonyms seit/synonyms.json data/imagenet-train",
    ),
    "export-seit": (
        ExportSeitConfig,
        "write a store in SeiT's release layout",
        "Writes the files SeiT's code reads. That layout stores an id in one byte, or two for 255..509, so\n"
        "a store using ids above 509 is refused (prune the codebook first). Files appear only when complete.\n\n"
        "example:\n  seit store export-seit data/imagenet-val out/imagenet-val",
    ),
}


def register(sub: argparse._SubParsersAction) -> None:
    from seit.cli import HelpFormatter

    p = sub.add_parser(
        "store",
        help="token stores: info, stats, verify, prune, import/export SeiT's files",
        description="Token stores hold every sample's token ids (plus label and key) in sharded files with a\n"
        "JSON manifest, the codebook and synonyms: the dataset format every seit stage reads and writes.\n"
        "The format is described in docs/store-format.md.",
        formatter_class=HelpFormatter,
    )
    p.set_defaults(group_parser=p)
    commands = p.add_subparsers(title="commands", metavar="COMMAND")
    for name, (cls, summary, description) in COMMANDS.items():
        c = commands.add_parser(name, help=summary, description=description, formatter_class=HelpFormatter)
        add_dataclass_args(c, cls)
        c.set_defaults(run=HANDLERS[name])


def _mb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n:,.0f} B"


def _table(rows: list[tuple[str, Any]]) -> str:
    return "\n".join(f"{k:<16} {v}" for k, v in rows)


def _info_rows(info: dict[str, Any]) -> list[tuple[str, Any]]:
    b = info["bytes"]
    created = info["created"]
    return [
        ("store", info["store"]),
        ("samples", f"{info['samples']:,}"),
        ("classes", info["classes"] if info["classes"] is not None else "-"),
        (
            "grid",
            f"{'x'.join(map(str, info['grid_shape']))} ids of {info['codebook_size']} codes ({info['ids_dtype']})",
        ),
        ("codec", ", ".join(info["codecs"]) or "-"),
        ("shards", info["shards"]),
        (
            "size",
            f"{_mb(b['total'])}: tokens {_mb(b['payload'])}, index {_mb(b['index'])}, other {_mb(b['side_files'])}",
        ),
        (
            "per sample",
            f"{info['bytes_per_sample']:.1f} B (tokens {info['payload_bytes_per_sample']:.1f}, "
            f"index {info['index_bytes_per_sample']:.2f})",
        ),
        ("bits/token", f"{info['bits_per_token']:.3f} (tokens), {info['total_bits_per_token']:.3f} (all files)"),
        ("codebook", info["codebook"] or "-"),
        ("synonyms", info["synonyms"] or "-"),
        ("code ids", info["code_ids"] or "-"),
        (
            "created",
            f"{created.get('time', '?')} by seit {created.get('seit_version', '?')}, {created.get('parts', 1)} part(s)",
        ),
        ("config", json.dumps(created.get("config") or {})),
    ]


def _open(path: str):
    from seit.store import TokenStore

    return TokenStore.open(path)


def run_info(args: argparse.Namespace) -> int:
    from seit.store.stats import store_info

    cfg = from_args(InfoConfig, args)
    info = store_info(_open(cfg.store))
    if not emit_json(cfg.json, info):
        print(_table(_info_rows(info)))
    return 0


def run_stats(args: argparse.Namespace) -> int:
    import numpy as np

    from seit.store.stats import plot_code_usage, store_stats

    cfg = from_args(StatsConfig, args)
    store = _open(cfg.store)
    stats = store_stats(store, max_samples=cfg.max_samples, show_progress=True)
    if cfg.png:
        plot_code_usage(np.array(stats["code_usage"]), cfg.png, title=f"code usage: {cfg.store}")
    if emit_json(cfg.json, stats):
        return 0
    counts = np.array(stats["code_usage"])
    top = np.argsort(counts)[::-1][: cfg.top]
    share = counts / max(counts.sum(), 1)
    labels = stats["label_counts"]
    rows = [
        *_info_rows(stats),
        ("decoded", f"{stats['decoded_samples']:,} samples"),
        ("codes used", f"{stats['codes_used']} of {stats['codebook_size']}"),
        ("entropy", f"{stats['entropy_bits_per_token']:.3f} bits/token (order 0)"),
        ("top codes", ", ".join(f"{i} ({100 * share[i]:.2f}%)" for i in top)),
        ("per class", f"min {min(labels)}, max {max(labels)} over {len(labels)} labels" if labels else "-"),
        ("unlabelled", stats["unlabelled"]),
    ]
    if cfg.png:
        rows.append(("png", cfg.png))
    print(_table(rows))
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from seit.store import verify_store

    cfg = from_args(VerifyConfig, args)
    summary = verify_store(cfg.store, show_progress=True)
    if not emit_json(cfg.json, {**summary, "ok": True}):
        print(f"ok: {summary['samples']:,} samples in {summary['shards']} shards ({_mb(summary['bytes'])}) verified")
    return 0


def run_prune(args: argparse.Namespace) -> int:
    from seit.store.codes import prune_store

    cfg = from_args(PruneConfig, args)
    result = prune_store(
        cfg.store,
        cfg.out,
        codes_from=cfg.codes_from,
        synonyms_k=cfg.synonyms,
        codec=cfg.codec,
        shard_bytes=int(cfg.shard_mb * (1 << 20)),
        resume=cfg.resume is not None,
        show_progress=True,
    )
    print(f"wrote {cfg.out}: {result.summary()}")
    return 0


def run_import_seit(args: argparse.Namespace) -> int:
    from pathlib import Path

    from seit.errors import SeitError
    from seit.interop.seit_release import import_seit, release_paths

    cfg = from_args(ImportSeitConfig, args)
    files = {k: getattr(cfg, k) for k in ("tokens", "index", "labels", "codebook", "synonyms")}
    if cfg.prefix:
        for kind, path in release_paths(cfg.prefix).items():
            if files[kind] is None and (kind in ("tokens", "index", "labels") or path.exists()):
                files[kind] = str(path)
    if files["tokens"] is None:
        raise SeitError("import-seit needs --tokens X-token.data.bin.gz or --prefix X")
    class_names = None
    if cfg.class_names:
        try:
            lines = Path(cfg.class_names).read_text().splitlines()
        except OSError as e:
            raise SeitError(f"{cfg.class_names}: cannot read the class names file ({e.strerror})") from None
        class_names = [line.strip() for line in lines if line.strip()]
    out = import_seit(
        cfg.out,
        **files,
        grid_shape=cfg.grid,
        codebook_size=cfg.codebook_size,
        class_names=class_names,
        codec=cfg.codec,
        shard_bytes=int(cfg.shard_mb * (1 << 20)),
        resume=cfg.resume is not None,
        show_progress=True,
    )
    print(f"wrote {out}", file=sys.stderr)
    return 0


def run_export_seit(args: argparse.Namespace) -> int:
    from seit.interop.seit_release import export_seit

    cfg = from_args(ExportSeitConfig, args)
    written = export_seit(cfg.store, cfg.out_prefix, overwrite=cfg.overwrite, show_progress=True)
    for path in written.values():
        print(path)
    return 0


HANDLERS = {
    "info": run_info,
    "stats": run_stats,
    "verify": run_verify,
    "prune": run_prune,
    "import-seit": run_import_seit,
    "export-seit": run_export_seit,
}
