"""Which entropy coder for the neighbour ranks? Bytes per sample and decode time of each candidate.

Fits the neighbour-rank transform (``seit.store.neighbour_model``, the ``ctx-ans`` defaults) on the first
``--fit`` samples of the benchmark token set, turns the other samples into rank sequences, and codes them
with every candidate, each sample decodable on its own:

- ``zstd``: one zstd frame per sample with a trained dictionary, the ranks in SeiT's escape bytes (``ctx``);
- ``pcodec-sample``: one pcodec chunk per sample (its tables in every sample);
- ``pcodec-group``: one pcodec chunk per group of ``--group`` samples, one page per sample (``ctx-ans``);
- ``constriction``: constriction's rANS with one fixed categorical model (fitted on the fitting samples),
  if the package is installed (it is not a seit dependency: ``pip install constriction``).

Reports bytes/sample (with every per-sample checksum or header share the coder needs) next to the ranks'
order-0 entropy, and the decode CPU time per sample in random batches of 256 (the coder alone).

    PYTHONPATH=src python benchmarks/rank_coders.py --samples 12000 --json rank_coders.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from seit.bench.entropy import entropy
from seit.bench.tokens import TokenSetConfig, generate_tokens
from seit.store.ans_pages import AnsPages
from seit.store.codec import codec_class, encoded_bytes
from seit.store.symbols import SymbolBytes
from seit.store.zstd_frames import ZstdFrames, train_dictionary


def decode_us(decode, n: int, rounds: int = 30) -> float:
    rng = np.random.default_rng(1)
    times = []
    for _ in range(rounds):
        idx = rng.integers(0, n, 256)
        start = time.process_time()
        decode(idx)
        times.append(time.process_time() - start)
    return 1e6 * float(np.median(times)) / 256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=12000)
    parser.add_argument("--fit", type=int, default=4096)
    parser.add_argument("--group", type=int, default=4096)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    ids, _ = generate_tokens(TokenSetConfig(samples=args.samples))
    codec = codec_class("ctx-ans").fit(ids[: args.fit], ids.shape[1:], 391)
    fit_ranks = codec._symbols(codec.check_many(ids[: args.fit]))
    ranks = codec._symbols(codec.check_many(ids[args.fit :]))
    n, numel, alphabet = len(ranks), ranks.shape[1], codec.model.alphabet
    counts = np.bincount(ranks.ravel(), minlength=alphabet)
    rows = {"order-0 entropy of the ranks": {"bytes_per_sample": entropy(counts) * numel / 8}}

    layout = SymbolBytes(alphabet)
    packed = [layout.pack(r) for r in ranks]
    frames = ZstdFrames(train_dictionary([layout.pack(r) for r in fit_ranks], 4096, 19), 19)
    blobs = [frames.compress(p) for p in packed]
    rows["zstd"] = {
        "bytes_per_sample": encoded_bytes(blobs) / n,
        "decode_us": decode_us(
            lambda idx: layout.unpack(frames.decompress_many([blobs[i] for i in idx], 2 * numel), numel), n
        ),
    }

    pages = AnsPages(numel, alphabet)
    singles = [pages.encode_group(r[None])[0] for r in ranks]
    rows["pcodec-sample"] = {
        "bytes_per_sample": encoded_bytes(singles) / n,
        "decode_us": decode_us(lambda idx: pages.decode_many([singles[i] for i in idx]), n),
    }
    grouped = [b for s in range(0, n, args.group) for b in pages.encode_group(ranks[s : s + args.group])]
    rows["pcodec-group"] = {
        "bytes_per_sample": encoded_bytes(grouped) / n,
        "decode_us": decode_us(lambda idx: pages.decode_many([grouped[i] for i in idx]), n),
    }

    try:
        import constriction
    except ImportError:
        rows["constriction"] = {"skipped": "not installed (pip install constriction)"}
    else:
        fit_counts = np.bincount(fit_ranks.ravel(), minlength=alphabet) + 0.5
        model = constriction.stream.model.Categorical(fit_counts / fit_counts.sum(), perfect=False)
        words = []
        for r in ranks.astype(np.int32):
            coder = constriction.stream.stack.AnsCoder()
            coder.encode_reverse(r, model)
            words.append(coder.get_compressed())

        def decode_ans(idx):
            return [constriction.stream.stack.AnsCoder(words[i]).decode(model, numel) for i in idx]

        rows["constriction"] = {
            "bytes_per_sample": sum(w.nbytes for w in words) / n,  # no checksum: would add 4
            "decode_us": decode_us(decode_ans, n),
        }

    print(f"{n} held-out samples of {numel} ranks (alphabet {alphabet}), transform fitted on {args.fit}")
    print(f"{'coder':32s} {'bytes/sample':>13s} {'decode us/sample':>17s}")
    for name, row in rows.items():
        if "skipped" in row:
            print(f"{name:32s} {row['skipped']}")
            continue
        dec = f"{row['decode_us']:17.2f}" if "decode_us" in row else ""
        print(f"{name:32s} {row['bytes_per_sample']:13.1f} {dec}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
