"""Benchmarks behind `seit bench NAME`: each measures seit against a baseline in the same run.

A benchmark module defines ``DESCRIPTION``, ``add_arguments(parser)`` and ``run(args) -> dict``; ``run``
prints a readable table and returns the figures, which ``--json`` saves.
"""

# name -> module; the CLI imports a module only when its benchmark runs.
BENCHMARKS: dict[str, str] = {
    "store": "seit.bench.store",
    "tokenize": "seit.bench.tokenize",
    "pipeline": "seit.bench.pipeline",
    "train": "seit.bench.train",
}
