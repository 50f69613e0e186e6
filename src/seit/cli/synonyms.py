"""`seit synonyms`: the top-k similar-code table Token-EDA draws from (a thin shell over seit.store.codes)."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

from seit.config import Checked, add_dataclass_args, at_least, field, from_args, json_field

DESCRIPTION = """\
Build each code's k most similar codes (cosine similarity of the store's codebook rows, the code itself
first) and save the table in the store, where `seit train` reads it for Token-EDA's synonym replacement.
SeiT builds it on the pruned codebook with k = 10 and draws from the first 5. With --json PATH the table
is also written as SeiT's synonyms.json ({"id": [ids, most similar first]}); --json alone prints it.
"""

EPILOG = """\
examples:
  seit synonyms tokens/train
  seit synonyms tokens/train --k 10 --json release/synonyms.json
"""


@dataclass
class SynonymsConfig(Checked):
    store: str = field(help="token store with a codebook (e.g. from `seit tokenize`)", positional=True)
    k: int = field(10, help="similar codes per code, the code itself included", check=at_least(1))
    json: str | None = json_field("the table in SeiT's synonyms.json layout")


def register(sub: argparse._SubParsersAction) -> None:
    from seit.cli import HelpFormatter

    p = sub.add_parser(
        "synonyms",
        help="build the synonym table (Token-EDA) from a store's codebook",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    add_dataclass_args(p, SynonymsConfig)
    p.set_defaults(run=run, group_parser=p)


def run(args: argparse.Namespace) -> int:
    cfg = from_args(SynonymsConfig, args)
    from seit.store.codes import add_synonyms

    table = add_synonyms(cfg.store, cfg.k, json_path=None if cfg.json == "-" else cfg.json)
    if cfg.json == "-":
        from seit.interop.seit_release import synonyms_json

        print(json.dumps(synonyms_json(table)))
        return 0
    print(
        f"synonyms [{table.shape[0]}, {table.shape[1]}] stored in {cfg.store}"
        + (f" and {cfg.json}" if cfg.json else "")
    )
    return 0
