"""SeiT++'s TokenAdapt: a feature space where geometric augmentations make sense for token grids.

Flipping, rotating or shearing a grid of code vectors does not give the codes of the transformed image
(each code describes an 8x8 pixel patch's content, including its orientation). TokenAdapt learns a pair of
maps around the codebook embeddings: ``conversion_function`` lifts a [D, g, g] grid of code vectors to a
finer [D, 2g, 2g] feature map, where the augmentation is applied, and ``reverse_transform`` reads a
[D, 2m, 2m] (augmented, cropped) map back as codebook logits per token of an m x m grid.

Both are enhancing-transformers ViTs (the layout of :mod:`seit.tokenizer.model`): a linear lift to the
transformer width, then a ViT decoder whose transposed-conv head doubles the grid; and a ViT encoder whose
stride-2 patch conv halves it, then a linear layer over the codebook. Parameter names are SeiT++'s
(``models_mtm.py``), so its released ``tokenadapt.ckpt`` loads as is
(:func:`seit.interop.seitpp_checkpoints.load_tokenadapt`). The position tables fix the sizes: the
conversion reads whole g x g grids (SeiT++: 32), the reverse writes m x m crops (SeiT++: 28).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from seit.errors import SeitError
from seit.tokenizer.config import TokenizerConfig, TransformerConfig
from seit.tokenizer.model import ViTDecoder, ViTEncoder, init_like_reference


@dataclass(frozen=True)
class TokenAdaptConfig:
    """Sizes of a TokenAdapt pair; the defaults are SeiT++'s released ones."""

    code_dim: int = 32
    codebook_size: int = 391
    grid: int = 32  # token grid the conversion reads
    crop: int = 28  # token grid the reverse writes
    dim: int = 384
    depth: int = 1
    heads: int = 6
    mlp_dim: int = 1536
    scale: int = 2  # feature-map cells per token side

    def __post_init__(self) -> None:
        if min(asdict(self).values()) < 1 or self.dim % 4:
            raise SeitError(f"TokenAdapt: sizes must be positive and dim a multiple of 4, got {self}")

    def _vit(self, tokens: int) -> TokenizerConfig:
        side = TransformerConfig(self.dim, self.depth, self.heads, self.mlp_dim)
        return TokenizerConfig(tokens * self.scale, self.scale, side, side, self.codebook_size, self.code_dim)


class TokenAdapt(nn.Module):
    def __init__(self, config: TokenAdaptConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or TokenAdaptConfig()
        decoder = ViTDecoder(cfg._vit(cfg.grid), channels=cfg.code_dim)
        encoder = ViTEncoder(cfg._vit(cfg.crop), channels=cfg.code_dim)
        decoder.apply(init_like_reference)
        encoder.apply(init_like_reference)
        self.conversion_function = nn.Sequential(nn.Linear(cfg.code_dim, cfg.dim), decoder)
        self.reverse_transform = nn.Sequential(encoder, nn.Linear(cfg.dim, cfg.codebook_size))

    def convert(self, vectors: torch.Tensor) -> torch.Tensor:
        """Code vectors [B, D, g, g] -> feature map [B, D, g*scale, g*scale] (SeiT++'s ``forward_conversion``)."""
        cfg = self.config
        if vectors.shape[1:] != (cfg.code_dim, cfg.grid, cfg.grid):
            raise SeitError(
                f"TokenAdapt.convert: expected code vectors [B, {cfg.code_dim}, {cfg.grid}, {cfg.grid}], "
                f"got {list(vectors.shape)}"
            )
        return self.conversion_function(vectors.flatten(2).transpose(1, 2))

    def reverse_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Feature map [B, D, m*scale, m*scale] -> codebook logits [B, m*m, K], raster order."""
        cfg, side = self.config, self.config.crop * self.config.scale
        if features.shape[1:] != (cfg.code_dim, side, side):
            raise SeitError(
                f"TokenAdapt.reverse: expected a feature map [B, {cfg.code_dim}, {side}, {side}], "
                f"got {list(features.shape)}"
            )
        return self.reverse_transform(features)

    @torch.no_grad()
    def invert(self, features: torch.Tensor) -> torch.Tensor:
        """Feature map -> token ids [B, m, m]: the most likely code per token (SeiT++'s ``forward_inversion``
        gives the same codes as one-hot maps)."""
        logits = self.reverse_logits(features)
        return logits.argmax(-1).view(features.shape[0], self.config.crop, self.config.crop)
