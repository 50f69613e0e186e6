"""Typed config of `seit continual` (no torch import: the CLI builds its flags from it)."""

from __future__ import annotations

from dataclasses import dataclass

from seit.augment.config import AugmentConfig
from seit.config import Checked, at_least, field, non_negative, positive, restart_field, resume_field
from seit.errors import ConfigError

MEMORY_KINDS = ("tokens", "pixels")


@dataclass
class ContinualDataConfig(Checked):
    store: str | None = field(None, help="training token store: the token-memory run (exemplars kept as tokens)")
    val_store: str | None = field(None, help="validation token store of the token-memory run")
    images: str | None = field(
        None, help="training image folder (class = sub-folder): the pixel-memory run (exemplars kept as JPEG files)"
    )
    val_images: str | None = field(None, help="validation image folder of the pixel-memory run")
    image_size: int = field(56, help="pixel run: side of the square crop the pixel ViT sees", check=at_least(1))
    num_workers: int | None = field(
        None, help="DataLoader workers (default: as seit train: 0 for tokens on CPU, 2 for images)", check=non_negative
    )

    def kinds(self) -> list[str]:
        """The memory kinds these inputs run: tokens (--store), pixels (--images), or both."""
        kinds = []
        for kind, train, val, flags in (
            ("tokens", self.store, self.val_store, "--store/--val-store"),
            ("pixels", self.images, self.val_images, "--images/--val-images"),
        ):
            if bool(train) != bool(val):
                raise ConfigError(f"{flags}: give both (every step is evaluated on the validation split)")
            if train:
                kinds.append(kind)
        if not kinds:
            raise ConfigError("no data: give --store/--val-store (token memory), --images/--val-images, or both")
        return kinds


@dataclass
class ContinualProtocolConfig(Checked):
    tasks: int = field(5, help="incremental steps: the classes are split into this many groups", check=at_least(1))
    class_order_seed: int = field(0, help="seed of the class order (a permutation of the classes)", check=non_negative)
    classes: int | None = field(
        None,
        help="use only the first N classes of that order (a smaller benchmark on the same data; default: all)",
        check=at_least(1),
    )
    memory_bytes: int = field(
        200_000,
        help="replay memory budget in bytes, every stored byte counted (tokens: each encoded page, offset and "
        "label, and once the store's codec state and tables; pixels: each image file and label); split evenly "
        "over the classes seen",
        check=non_negative,
    )
    selection: str = field(
        "herding",
        help="which exemplars a class keeps: herding (iCaRL: closest to the class mean of the current model's "
        "features) or random",
        choices=("herding", "random"),
    )


@dataclass
class ContinualModelConfig(Checked):
    token_model: str = field("deit_tiny_token_32", help="ViT of the token-memory run (see seit train --list-models)")
    pixel_model: str = field("deit_tiny_pixel_8", help="ViT of the pixel-memory run")
    embed_dim: int | None = field(None, help="override both ViTs' width", check=at_least(1))
    depth: int | None = field(None, help="override both ViTs' number of blocks", check=at_least(1))
    num_heads: int | None = field(None, help="override both ViTs' number of heads", check=at_least(1))
    drop_path: float = field(0.0, help="stochastic depth rate", check=non_negative)


@dataclass
class ContinualOptimConfig(Checked):
    epochs: int = field(10, help="epochs per incremental step (over its new data plus the memory)", check=at_least(1))
    batch_size: int = field(64, help="batch size", check=at_least(1))
    opt: str = field("adamw", help="timm optimizer name")
    lr: float = field(1e-3, help="peak learning rate of each step's cosine schedule (not batch-scaled)", check=positive)
    weight_decay: float = field(0.05, help="weight decay", check=non_negative)
    warmup_epochs: float = field(1.0, help="linear warm-up epochs at the start of each step", check=non_negative)
    min_lr: float = field(1e-5, help="final learning rate of each step's cosine schedule", check=non_negative)
    clip_grad: float | None = field(None, help="clip the gradient norm to this value", check=positive)


@dataclass
class ContinualRunConfig(Checked):
    output: str = field("runs/continual", help="output folder: one sub-folder per memory kind, the report")
    resume: str | None = resume_field("KIND/last.pt")
    restart: bool = restart_field()
    seed: int = field(0, help="seed: data order, augmentation and the random selection", check=non_negative)
    device: str | None = field(None, help="cuda / cpu (default: cuda if available)")
    log_every: int = field(20, help="steps between metric lines", check=at_least(1))
    ckpt_every: int = field(200, help="steps between mid-step checkpoints (0: only at step ends)", check=non_negative)
    max_steps: int | None = field(
        None, help="stop each run after this many optimizer steps in total, resumable (smoke tests)", check=at_least(1)
    )
    tensorboard: bool = field(True, help="write TensorBoard event files to OUTPUT/KIND/tb")


@dataclass
class ContinualConfig(Checked):
    data: ContinualDataConfig = field(ContinualDataConfig, help="data")
    protocol: ContinualProtocolConfig = field(ContinualProtocolConfig, help="class-incremental protocol and memory")
    model: ContinualModelConfig = field(ContinualModelConfig, help="model (the same ViT for both memories)")
    optim: ContinualOptimConfig = field(ContinualOptimConfig, help="optimisation (the same for both memories)")
    augment: AugmentConfig = field(AugmentConfig, help="augmentation (Token-EDA, Emb-Noise, ColorAdapt: tokens only)")
    run: ContinualRunConfig = field(ContinualRunConfig, help="run")

    def __post_init__(self) -> None:
        super().__post_init__()
        m = self.model
        if m.embed_dim is not None and m.num_heads is not None and m.embed_dim % m.num_heads:
            raise ConfigError(f"--embed-dim {m.embed_dim} must be divisible by --num-heads {m.num_heads}")
