"""Sizes and options of `seit demo` (no torch import: the CLI builds its flags from them)."""

from __future__ import annotations

from dataclasses import dataclass

from seit.config import Checked, field, non_negative
from seit.errors import ConfigError


@dataclass(frozen=True)
class DemoSize:
    """Every budget of one demo size; the same model and recipe for the token and the pixel ViT."""

    classes: int
    train_per_class: int
    val_per_class: int
    tokenizer_steps: int
    epochs: int
    batch_size: int = 64
    lr: float = 1e-3  # the same for every row of the trade-off
    crop_scale: tuple[float, float] = (0.35, 1.0)  # random resized crop's area range, every row
    image_size: int = 128  # tokenizer input: 128 px -> 16x16 ids (patch 8); the pixel ViT sees 112 px crops
    embed_dim: int = 128
    depth: int = 2
    num_heads: int = 4


SIZES = {
    # ViT epochs sized to the budgets (15 min default, 4 min quick, on 2 CPU cores), the same for every row: four
    # rows of compute-bound ViT training are most of both runs. Fewer cost accuracy fast (quick token ViT: 46.0%
    # at 25 epochs, 41.0% at 22, 38.0% at 20, 32.5% at 18)
    "default": DemoSize(classes=10, train_per_class=500, val_per_class=50, tokenizer_steps=800, epochs=17),
    # the first four classes (stripes, triangles, checker, crosses): a ViT learns them within a minute
    "quick": DemoSize(classes=4, train_per_class=250, val_per_class=50, tokenizer_steps=300, epochs=22),
    # a smoke run of every stage and artefact in seconds (tests of the plumbing); it learns next to nothing
    "tiny": DemoSize(classes=4, train_per_class=40, val_per_class=10, tokenizer_steps=30, epochs=2, batch_size=32),
}


@dataclass
class DemoConfig(Checked):
    out: str = field(
        "seit-demo", help="output folder (every stage's artefacts and the report)", flag="output", hidden=("--out",)
    )
    quick: bool = field(False, help="the 4-minute version: 4 classes, fewer images (same as --size quick)")
    size: str | None = field(
        None,
        help="default (10 classes, ~12 min on 2 CPU cores), quick (4 classes, ~4 min) or tiny (a smoke run of "
        "every stage in seconds; its accuracies mean nothing); stage times in BENCHMARKS.md",
        choices=tuple(SIZES),
    )
    seed: int = field(0, help="seed of the dataset and of every training run", check=non_negative)
    device: str | None = field(None, help="cuda / cpu (default: cuda if available)")
    num_workers: int = field(2, help="worker processes for image decoding", check=non_negative)

    def demo_size(self) -> tuple[str, DemoSize]:
        if self.quick and self.size not in (None, "quick"):
            raise ConfigError(f"--quick and --size {self.size} contradict each other; give one of them")
        name = self.size or ("quick" if self.quick else "default")
        return name, SIZES[name]
