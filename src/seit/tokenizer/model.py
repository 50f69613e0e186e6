"""ViT-VQGAN with the parameter layout of enhancing-transformers' ``ViTVQ``.

State-dict keys and shapes are identical to that project's (``encoder.*``, ``decoder.*``, ``pre_quant``,
``post_quant``, ``quantizer.embedding``), so its Lightning checkpoints load as they are. Numerics follow
it too: pre-norm transformer blocks with Linear-Tanh-Linear MLPs and bias-free qkv, fixed 2-D sin-cos
position embeddings, and a quantiser that assigns each latent to the nearest codebook row after both are
L2-normalised, so the decoder always consumes unit-length code vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seit.tokenizer.config import TokenizerConfig, TokenizerError, TransformerConfig


def sincos_position_embedding(dim: int, grid: tuple[int, int]) -> torch.Tensor:
    """Fixed 2-D sin-cos embeddings [1, h*w, dim] in raster order, computed in float64 as the reference.

    The first half of the channels encodes the column index, the second half the row index.
    """
    rows, cols = np.meshgrid(np.arange(grid[0], dtype=np.float64), np.arange(grid[1], dtype=np.float64), indexing="ij")
    freqs = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim // 4))

    def encode(pos: np.ndarray) -> np.ndarray:
        angles = np.outer(pos.reshape(-1), freqs)
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    table = np.concatenate([encode(cols), encode(rows)], axis=1)
    return torch.from_numpy(table).float().unsqueeze(0)


class PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.heads = heads
        inner = heads * dim_head
        self.to_qkv = nn.Linear(dim, inner * 3, bias=False)
        # The reference drops the output projection when it would be a square identity-shaped map.
        self.to_out = nn.Identity() if heads == 1 and dim_head == dim else nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.to_qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Transformer(nn.Module):
    """Pre-norm blocks, then a final LayerNorm (``transformer.norm``)."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    PreNorm(cfg.dim, Attention(cfg.dim, cfg.heads, cfg.dim_head)),
                    PreNorm(cfg.dim, FeedForward(cfg.dim, cfg.mlp_dim)),
                ]
            )
            for _ in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(cfg.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for attn, ff in self.layers:
            x = x + attn(x)
            x = x + ff(x)
        return self.norm(x)


class ToTokens(nn.Module):
    """[B, C, h, w] -> [B, h*w, C] (raster order)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).transpose(1, 2)


class ToGrid(nn.Module):
    """[B, h*w, C] -> [B, C, h, w]."""

    def __init__(self, grid: tuple[int, int]) -> None:
        super().__init__()
        self.grid = grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *self.grid)


class ViTEncoder(nn.Module):
    """Images [B, channels, H, W] -> patch features; ``channels`` is 3 but for SeiT++'s TokenAdapt reverse."""

    def __init__(self, cfg: TokenizerConfig, channels: int = 3) -> None:
        super().__init__()
        dim, p = cfg.encoder.dim, cfg.patch_size
        self.to_patch_embedding = nn.Sequential(nn.Conv2d(channels, dim, kernel_size=p, stride=p), ToTokens())
        self.register_buffer("en_pos_embedding", sincos_position_embedding(dim, cfg.grid_shape))
        self.transformer = Transformer(cfg.encoder)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.transformer(self.to_patch_embedding(images) + self.en_pos_embedding)


class ViTDecoder(nn.Module):
    """Patch features -> images [B, channels, H, W]; ``channels`` is 3 but for SeiT++'s TokenAdapt conversion."""

    def __init__(self, cfg: TokenizerConfig, channels: int = 3) -> None:
        super().__init__()
        dim, p = cfg.decoder.dim, cfg.patch_size
        self.transformer = Transformer(cfg.decoder)
        self.register_buffer("de_pos_embedding", sincos_position_embedding(dim, cfg.grid_shape))
        to_channels = nn.ConvTranspose2d(dim, channels, kernel_size=p, stride=p)
        self.to_pixel = nn.Sequential(ToGrid(cfg.grid_shape), to_channels)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.to_pixel(self.transformer(tokens + self.de_pos_embedding))

    @property
    def last_layer(self) -> nn.Parameter:
        return self.to_pixel[1].weight


@dataclass
class Quantized:
    """One quantiser pass: straight-through vectors for the decoder, the VQ loss and the ids [B, N]."""

    vectors: torch.Tensor
    loss: torch.Tensor
    ids: torch.Tensor


class VectorQuantizer(nn.Module):
    """Nearest codebook row by Euclidean distance between L2-normalised latents and L2-normalised rows.

    The loss is the reference's: ``|sg(q) - z|^2 + beta * |q - sg(z)|^2`` on the normalised vectors
    (beta weighs the codebook term there, not the commitment term as in the VQ-VAE paper).
    """

    def __init__(self, codebook_size: int, code_dim: int, beta: float = 0.25) -> None:
        super().__init__()
        self.beta = beta
        self.embedding = nn.Embedding(codebook_size, code_dim)

    def assign(self, latents: torch.Tensor, chunk_elems: int = 1 << 24) -> torch.Tensor:
        """Ids [...] of the nearest codes for latents [..., D]; chunked so [rows, K] stays small."""
        flat = F.normalize(latents.reshape(-1, latents.shape[-1]).float(), dim=-1)
        codes = F.normalize(self.embedding.weight.float(), dim=-1)
        code_sq = codes.pow(2).sum(1)
        rows = max(1, chunk_elems // codes.shape[0])
        ids = torch.empty(flat.shape[0], dtype=torch.long, device=flat.device)
        for start in range(0, flat.shape[0], rows):
            z = flat[start : start + rows]
            dist = z.pow(2).sum(1, keepdim=True) + code_sq - 2 * z @ codes.t()
            ids[start : start + rows] = dist.argmin(1)
        return ids.view(latents.shape[:-1])

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.embedding(ids), dim=-1)

    def forward(self, latents: torch.Tensor) -> Quantized:
        latents = latents.float()
        with torch.no_grad():
            ids = self.assign(latents)
        q = self.lookup(ids)
        z = F.normalize(latents, dim=-1)
        loss = (q.detach() - z).pow(2).mean() + self.beta * (q - z.detach()).pow(2).mean()
        # Straight-through: the decoder sees q, the encoder gets the decoder's gradient.
        return Quantized(latents + (q - latents).detach(), loss, ids)


@dataclass
class TokenizerOutput:
    reconstructions: torch.Tensor
    latents: torch.Tensor  # pre-quant encoder output [B, N, D]
    ids: torch.Tensor  # [B, N]
    vq_loss: torch.Tensor


class Tokenizer(nn.Module):
    """Images [B, 3, H, W] in [0, 1] (no mean/std) <-> code ids [B, h, w]."""

    def __init__(self, config: TokenizerConfig, beta: float = 0.25) -> None:
        super().__init__()
        self.config = config
        self.encoder = ViTEncoder(config)
        self.decoder = ViTDecoder(config)
        self.quantizer = VectorQuantizer(config.codebook_size, config.code_dim, beta)
        self.pre_quant = nn.Linear(config.encoder.dim, config.code_dim)
        self.post_quant = nn.Linear(config.code_dim, config.decoder.dim)
        self.encoder.apply(init_like_reference)
        self.decoder.apply(init_like_reference)
        nn.init.uniform_(self.quantizer.embedding.weight, -1.0 / config.codebook_size, 1.0 / config.codebook_size)

    @property
    def grid_shape(self) -> tuple[int, int]:
        return self.config.grid_shape

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    def _check_images(self, images: torch.Tensor) -> None:
        size = self.config.image_size
        if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[-2:]) != (size, size):
            raise TokenizerError(f"expected images [B, 3, {size}, {size}] in [0, 1], got {tuple(images.shape)}")

    def encode_latents(self, images: torch.Tensor) -> torch.Tensor:
        """Pre-quantisation latents [B, h*w, code_dim] (what SeiT's released tokenizer returns)."""
        self._check_images(images)
        return self.pre_quant(self.encoder(images))

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Code ids [B, h, w] (long) of images [B, 3, H, W] in [0, 1]."""
        latents = self.encode_latents(images)
        return self.quantizer.assign(latents).view(images.shape[0], *self.grid_shape)

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """The unit-length code vectors [..., code_dim] the decoder consumes for ids [...]."""
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.codebook_size):
            raise TokenizerError(
                f"ids in [{int(ids.min())}, {int(ids.max())}] are outside this codebook of {self.codebook_size}"
            )
        return self.quantizer.lookup(ids.long())

    def decode_vectors(self, vectors: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] (not clamped) from code vectors [B, h*w, code_dim]."""
        return self.decoder(self.post_quant(vectors))

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] (raw decoder output, about [0, 1], not clamped) from ids [B, h, w]."""
        if ids.ndim != 3 or tuple(ids.shape[1:]) != self.grid_shape:
            h, w = self.grid_shape
            raise TokenizerError(f"expected ids [B, {h}, {w}], got {tuple(ids.shape)}")
        return self.decode_vectors(self.lookup(ids.flatten(1)))

    def codebook_vectors(self, normalized: bool = True) -> torch.Tensor:
        """The codes [K, code_dim] as the tokenizer uses them: unit rows (directions).

        Quantisation compares directions only and the decoder consumes unit vectors, so the raw row norms
        carry no information the tokenizer uses. ``normalized=False`` gives the raw
        ``quantizer.embedding.weight`` rows.
        """
        weight = self.quantizer.embedding.weight.detach()
        return F.normalize(weight, dim=-1) if normalized else weight.clone()

    def classifier_codebook(self) -> torch.Tensor:
        """The codebook [K, code_dim] a token classifier embeds ids with: the unit rows times sqrt(code_dim).

        Same directions as :meth:`codebook_vectors`, at unit RMS per element: the scale of SeiT's released
        codebook (row norms about sqrt(32)), which its augmentation constants (Emb-Noise std 1) assume.
        """
        return self.codebook_vectors() * self.config.code_dim**0.5

    def forward(self, images: torch.Tensor) -> TokenizerOutput:
        latents = self.encode_latents(images)
        q = self.quantizer(latents)
        return TokenizerOutput(self.decode_vectors(q.vectors), latents, q.ids, q.loss)


def init_like_reference(m: nn.Module) -> None:
    """Xavier-uniform weights (conv kernels flattened per output map), zero biases, unit LayerNorms."""
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.xavier_uniform_(m.weight.view(m.weight.shape[0], -1))


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Parameter counts per top-level part and in total (fixed position embeddings excluded)."""
    counts = {name: sum(p.numel() for p in child.parameters()) for name, child in model.named_children()}
    counts["total"] = sum(counts.values())
    return counts
