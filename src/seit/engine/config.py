"""Typed configs of `seit train` and `seit eval` (no torch import here: the CLI builds flags from them)."""

from __future__ import annotations

from dataclasses import dataclass

from seit.augment.config import AugmentConfig
from seit.config import (
    Checked,
    at_least,
    between,
    field,
    non_negative,
    positive,
    probability,
    restart_field,
    resume_field,
)
from seit.errors import ConfigError


@dataclass
class DataConfig(Checked):
    store: str | None = field(None, help="training token store (path or fsspec URL)")
    val_store: str | None = field(None, help="validation token store, evaluated after every epoch")
    train_token_file: str | None = field(
        None, help="SeiT release layout instead of --store: X-token.data.bin.gz (index X-token.index.npy.gz beside it)"
    )
    train_label_file: str | None = field(None, help="SeiT release layout: X-label.txt of --train-token-file")
    val_token_file: str | None = field(None, help="SeiT release layout: validation token file")
    val_label_file: str | None = field(None, help="SeiT release layout: validation label file")
    codebook_path: str | None = field(None, help="codebook.ckpt (float [K, D]); default: the store's own codebook")
    token_synonym_dict: str | None = field(None, help="synonyms.json; default: the store's own synonym table")
    images: str | None = field(None, help="train the pixel baseline on this image folder (class = sub-folder)")
    val_images: str | None = field(None, help="validation image folder for the pixel baseline")
    image_size: int = field(224, help="pixel baseline: side of the square crop the model sees", check=at_least(1))
    pixel_cache_mb: int = field(
        1024,
        help="pixel baseline: decode each image folder once into memory when its decoded RGB pixels take at most "
        "this many MiB (crops are then cut in the training process); larger folders, or 0, decode every image "
        "every epoch in worker processes",
        check=non_negative,
    )
    streaming: bool = field(
        False, help="stream the training store's shards through fsspec (remote stores) instead of random access"
    )
    verify_shards: bool = field(
        False,
        help="with --streaming: read each shard whole and check its sha256 before using it (default: every "
        "shard's index CRC and every sample's own checksum; or run `seit store verify` once after copying a store)",
    )
    shuffle: str = field(
        "global",
        help="epoch order: exact global shuffle, or 'chunk' (runs of consecutive samples permuted: "
        "for streaming splits too big for RAM); either way a function of (seed, epoch) only",
        choices=("global", "chunk"),
    )
    num_workers: int | None = field(
        None,
        help="DataLoader worker processes per rank (default: 2; 0 on CPU for tokens and for images decoded into "
        "memory (--pixel-cache-mb), where workers would take cores from the model's threads)",
        check=non_negative,
    )


@dataclass
class ModelConfig(Checked):
    model: str = field("deit_small_token_32", help="timm model name (see `seit train --list-models`)")
    embed_dim: int | None = field(
        None, help="override the architecture's width (e.g. a smaller ViT for CPU runs)", check=at_least(1)
    )
    depth: int | None = field(None, help="override the architecture's number of blocks", check=at_least(1))
    num_heads: int | None = field(None, help="override the architecture's number of attention heads", check=at_least(1))
    drop_path: float = field(0.1, help="stochastic depth rate", check=between(0, 1, include_hi=False))
    finetune: str | None = field(
        None,
        help="initialise from this checkpoint (ours or SeiT's; a token ViT's for --images and the other way "
        "round): blocks, norms and class token carry over, position embeddings are interpolated, the stem is "
        "re-made when tokens and pixels change places, the head when the classes change; or from a masked-token-"
        "modeling model (seit pretrain's last.pt, SeiT++'s checkpoint): its encoder, stem and head fresh",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.embed_dim is not None and self.num_heads is not None and self.embed_dim % self.num_heads:
            raise ConfigError(
                f"--embed-dim {self.embed_dim} must be divisible by --num-heads {self.num_heads} (each head gets "
                "embed_dim / num_heads channels)"
            )

    def size_overrides(self) -> dict[str, int]:
        """The architecture overrides that were set, as timm.create_model keyword arguments."""
        sizes = {"embed_dim": self.embed_dim, "depth": self.depth, "num_heads": self.num_heads}
        return {k: v for k, v in sizes.items() if v is not None}


@dataclass
class OptimConfig(Checked):
    epochs: int = field(300, help="training epochs", check=at_least(1))
    batch_size: int = field(64, help="batch size per process (global batch = this x world size)", check=at_least(1))
    opt: str = field("adamw", help="timm optimizer name")
    lr: float = field(7.5e-4, help="base learning rate, scaled by global batch / 512 (SeiT)", check=positive)
    unscale_lr: bool = field(False, help="use --lr as is, without the batch/512 scaling")
    weight_decay: float = field(0.1, help="weight decay", check=non_negative)
    warmup_epochs: float = field(5.0, help="linear warm-up epochs", check=non_negative)
    warmup_lr: float = field(1e-6, help="learning rate at the start of warm-up", check=non_negative)
    min_lr: float = field(1e-5, help="final learning rate of the cosine schedule", check=non_negative)
    clip_grad: float | None = field(None, help="clip the gradient norm to this value", check=positive)
    layer_decay: float | None = field(
        None,
        help="layer-wise lr decay for fine-tuning (SeiT++: 0.65): block i of N trains at lr x decay^(N-i), "
        "the stem at lr x decay^(N+1), norm and head at lr",
        check=between(0, 1, include_lo=False),
    )
    model_ema: bool = field(True, help="keep an EMA of the weights and evaluate it too")
    model_ema_decay: float = field(0.99996, help="EMA decay per step", check=probability)


@dataclass
class RunConfig(Checked):
    output: str = field("runs/train", help="output directory: checkpoints, metrics.jsonl, TensorBoard, final weights")
    resume: str | None = resume_field("last.pt")
    restart: bool = restart_field()
    seed: int = field(
        0,
        help="seed: the data order derives from (seed, epoch), each step's random draws from (seed, step)",
        check=non_negative,
    )
    device: str | None = field(None, help="cuda / cpu (default: cuda if available)")
    amp: str = field(
        "auto",
        help="autocast dtype: bf16, fp16 (with loss scaling), none; auto = bf16 on CUDA",
        choices=("auto", "bf16", "fp16", "none"),
    )
    compile: bool = field(False, help="torch.compile the model")
    log_every: int = field(20, help="steps between metric lines", check=at_least(1))
    ckpt_every: int = field(500, help="steps between mid-epoch checkpoints (0: only at epoch ends)", check=non_negative)
    eval_every: int = field(1, help="epochs between evaluations", check=at_least(1))
    max_steps: int | None = field(
        None, help="stop after this many steps in total (smoke tests, benchmarks)", check=at_least(1)
    )
    tensorboard: bool = field(True, help="write TensorBoard event files to OUTPUT/tb")


@dataclass
class TrainConfig(Checked):
    data: DataConfig = field(DataConfig, help="data")
    model: ModelConfig = field(ModelConfig, help="model")
    optim: OptimConfig = field(OptimConfig, help="optimisation (SeiT's DeiT recipe)")
    augment: AugmentConfig = field(AugmentConfig, help="augmentation (SeiT's token augmentation)")
    run: RunConfig = field(RunConfig, help="run")


@dataclass
class EvalConfig(Checked):
    checkpoint: str | None = field(
        None,
        help="classifier: a seit train output folder (the file its best.json names), model.safetensors / "
        "model_ema.safetensors / last.pt from seit train, or a SeiT checkpoint (checkpoint.pth, trained-vit.ckpt; "
        "then --codebook-path is needed); SeiT's --model-path says the same",
        positional=True,
    )
    store: str | None = field(None, help="evaluate on this token store (path or fsspec URL)")
    token_file: str | None = field(None, help="evaluate on SeiT's release files: X-token.data.bin.gz ...")
    label_file: str | None = field(None, help="... with its X-label.txt")
    images: str | None = field(
        None, help="evaluate on images (ImageFolder tree or list file), tokenized on the fly with --tokenizer"
    )
    tokenizer: str | None = field(None, help="tokenizer for --images (ours, enhancing-transformers .ckpt, ...)")
    allow_legacy_pickle: bool = field(False, help="allow SeiT's pickled tokenizer module (allow-listed classes)")
    resize: str = field(
        "squash", help="image preprocessing for --images: squash (SeiT) or crop", choices=("squash", "crop")
    )
    codebook_path: str | None = field(None, help="codebook.ckpt for a SeiT checkpoint (ours carry theirs)")
    model: str | None = field(None, help="architecture of a SeiT checkpoint (default: inferred from its shapes)")
    crop_size: int | None = field(
        None,
        help="token crop side the classifier sees (default: the one its file records; a SeiT checkpoint's position "
        "embeddings give 2 x its patch grid)",
        check=at_least(1),
    )
    batch_size: int = field(128, help="batch size per process", check=at_least(1))
    num_workers: int = field(2, help="DataLoader worker processes per rank", check=non_negative)
    device: str | None = field(None, help="cuda / cpu (default: cuda if available)")
    output: str | None = field(None, help="write eval.json and confusion.png here (default: print only)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.checkpoint is None:
            raise ConfigError("give the classifier to evaluate: CHECKPOINT (SeiT: --model-path)")
