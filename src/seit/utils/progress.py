"""Progress bars with rates, shown by the main process only."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm


def progress(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    disable: bool | None = None,
    **kwargs: Any,
) -> tqdm:
    """A tqdm bar; hidden on non-zero ranks and when SEIT_NO_PROGRESS=1."""
    if disable is None:
        disable = os.environ.get("RANK", "0") != "0" or os.environ.get("SEIT_NO_PROGRESS") == "1"
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        disable=disable,
        dynamic_ncols=True,
        file=sys.stderr,
        smoothing=0.1,
        **kwargs,
    )
