"""SeiT++'s masked token modeling (MTM) model, in timm's registry: ``import seit.models`` registers it.

A MAGE-style encoder-decoder over token ids. The ids of an m x m crop are embedded (a learned table plus
LayerNorm, ``token_emb``), cut into patches by a kernel-2 stride-2 stem, and per step a random share of the
patches is *masked* (replaced by ``mask_token_label``); a fixed share of those, the smallest masking ratio,
is also *dropped* from the encoder's input, so the encoder only sees what it must. The decoder puts the
sequence back together, filling every masked slot with the encoder's class-token output, and
``mlm_layer`` turns each patch into one prediction per token (p x p of them), scored against the codebook
table by a dot product. The loss (:func:`masked_token_loss`) counts masked patches only.

Parameter names are those of SeiT++'s ``models_mtm.MaskedAutoencoderTokenViT`` so its pre-training
checkpoints load (through :func:`seit.interop.seitpp_checkpoints.mtm_checkpoint_filter_fn`); SeiT++'s
model also holds the TokenAdapt pair, which seit keeps apart (:class:`seit.models.tokenadapt.TokenAdapt`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.vision_transformer import Block
from torch import nn

from seit.errors import SeitError
from seit.tokenizer.model import init_like_reference, sincos_position_embedding

MTM_MODELS = ("mae_token_vit_base_patch16_dec512d4b_k2s2_vitvqgan_32", "mtm_token_vit_tiny_test")


@dataclass(frozen=True)
class MaskRatio:
    """SeiT++'s masking ratio: a normal(mu, std) truncated to [min, max], drawn once per step.

    ``min`` is also the share of patches dropped from the encoder's input (SeiT++'s ``mask_ratio_min``).
    """

    min: float = 0.5
    max: float = 1.0
    mu: float = 0.55
    std: float = 0.25

    def __post_init__(self) -> None:
        if not (0.0 < self.min <= self.max <= 1.0) or not self.std > 0:
            raise SeitError(
                f"mask ratio: need 0 < mask_ratio_min ({self.min}) <= mask_ratio_max ({self.max}) <= 1 and "
                f"mask_ratio_std ({self.std}) > 0"
            )

    def sample(self, generator: torch.Generator | None = None) -> float:
        """One draw, by inverting the normal CDF on the interval's share of probability mass."""
        normal = torch.distributions.Normal(torch.tensor(self.mu, dtype=torch.float64), self.std)
        lo, hi = normal.cdf(torch.tensor([self.min, self.max], dtype=torch.float64))
        u = lo + (hi - lo) * torch.rand((), generator=generator, dtype=torch.float64)
        return float(normal.icdf(u).clamp(self.min, self.max))


@dataclass
class TokenMasks:
    """Per patch, [B, L] bool: ``masked`` patches are predicted; ``dropped`` (a subset) never reach the encoder."""

    dropped: torch.Tensor
    masked: torch.Tensor


def sample_masks(
    batch: int, num_patches: int, ratio: MaskRatio, generator: torch.Generator | None = None, device=None
) -> TokenMasks:
    """Masks for one step: one ratio for the batch, then per sample the patches of lowest uniform noise.

    As in SeiT++, ``ceil(L * ratio)`` patches are masked and ``ceil(L * min)`` of them dropped; ranking one
    noise draw makes the dropped patches a subset of the masked ones (ties cannot break the counts).
    """
    num_masked = math.ceil(num_patches * ratio.sample(generator))
    num_dropped = math.ceil(num_patches * ratio.min)
    noise = torch.rand(batch, num_patches, generator=generator).to(device)
    rank = noise.argsort(dim=1).argsort(dim=1)
    return TokenMasks(dropped=rank < num_dropped, masked=rank < num_masked)


def masked_token_loss(
    logits: torch.Tensor, target: torch.Tensor, masked: torch.Tensor, smoothing: float = 0.0, bce: bool = False
) -> torch.Tensor:
    """Mean loss over the tokens of masked patches.

    ``logits`` [B, H*W, K] over the codebook, ``target`` ids [B, H, W], ``masked`` [B, h, w] per patch
    (H/h = W/w = patch size). Cross-entropy with label smoothing ``smoothing`` (SeiT++'s
    ``--smoothing``), or with ``bce`` a per-code binary cross-entropy against the one-hot target, averaged
    over the K codes (``--bce_loss``). Each masked patch weighs the same (SeiT++ averages within a patch
    first; all patches have p*p tokens, so this is the plain mean over their tokens).
    """
    num_codes = logits.shape[-1]
    flat_logits, flat_target = logits.reshape(-1, num_codes), target.reshape(-1)
    if bce:
        per_token = F.binary_cross_entropy_with_logits(
            flat_logits, F.one_hot(flat_target, num_codes).to(flat_logits.dtype), reduction="none"
        ).mean(-1)
    else:
        # (1 - s) * NLL + s * mean over codes of -log p: SeiT++'s LabelSmoothingCrossEntropy
        per_token = F.cross_entropy(flat_logits, flat_target, reduction="none", label_smoothing=smoothing)
    p = target.shape[-1] // masked.shape[-1]
    weight = masked.to(per_token.dtype).repeat_interleave(p, dim=1).repeat_interleave(p, dim=2).reshape(-1)
    return (per_token * weight).sum() / weight.sum()


class TokenEmbedding(nn.Module):
    """Learned code embedding + LayerNorm + dropout (SeiT++'s ``BertEmbeddings``; its parameter names)."""

    def __init__(self, codebook_size: int, dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(codebook_size, dim)
        self.LayerNorm = nn.LayerNorm(dim, eps=1e-6)
        self.dropout = nn.Dropout(dropout)
        nn.init.normal_(self.word_embeddings.weight, std=0.02)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.LayerNorm(self.word_embeddings(ids)))


class TokenPredictor(nn.Module):
    """Decoder patch features -> logits over the codebook for each of the patch's p x p tokens.

    One linear layer gives p*p feature vectors of the code width per patch; they are laid back onto the
    token grid (raster order), passed through GELU and LayerNorm, and scored against the (frozen) code
    embedding table plus a per-code bias. SeiT++'s ``MlmLayer``.
    """

    def __init__(self, in_dim: int, code_dim: int, codebook_size: int, patch_size: int, grid: int) -> None:
        super().__init__()
        self.patch_size, self.grid = patch_size, grid
        self.fc = nn.Linear(in_dim, patch_size * patch_size * code_dim)
        self.gelu = nn.GELU()
        self.ln = nn.LayerNorm(code_dim)
        self.bias = nn.Parameter(torch.zeros(1, 1, codebook_size))

    def forward(self, patches: torch.Tensor, code_table: torch.Tensor) -> torch.Tensor:
        b, p, g = patches.shape[0], self.patch_size, self.grid // self.patch_size
        x = self.fc(patches).view(b, g, g, p, p, -1).permute(0, 1, 3, 2, 4, 5).reshape(b, g * g * p * p, -1)
        return self.ln(self.gelu(x)) @ code_table.t() + self.bias


class MaskedTokenViT(nn.Module):
    """SeiT++'s MTM encoder-decoder (see the module docstring). ``forward(ids)`` returns the loss."""

    def __init__(
        self,
        img_size: int = 28,
        patch_size: int = 2,
        in_chans: int = 32,
        codebook_size: int = 391,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        decoder_embed_dim: int = 512,
        decoder_depth: int = 4,
        decoder_num_heads: int = 16,
        mlp_ratio: float = 4.0,
        mask_ratio: MaskRatio | None = None,
        smoothing: float = 0.1,
        bce_loss: bool = False,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if img_size % patch_size:
            raise SeitError(f"MTM: token crop {img_size} must be a multiple of the patch size {patch_size}")
        self.img_size, self.patch_size, self.codebook_size = img_size, patch_size, codebook_size
        self.grid = img_size // patch_size
        self.num_patches = self.grid * self.grid
        self.mask_ratio = mask_ratio or MaskRatio()
        self.smoothing, self.bce_loss = smoothing, bce_loss
        norm = partial(nn.LayerNorm, eps=1e-6)

        self.token_emb = TokenEmbedding(codebook_size, in_chans, dropout)
        self.mask_token_label = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)  # kernel = stride = patch_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        grid = (self.grid, self.grid)
        self.register_buffer("pos_embed", _with_cls_row(sincos_position_embedding(embed_dim, grid)))
        self.blocks = nn.Sequential(
            *(Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm) for _ in range(depth))
        )
        self.norm = norm(embed_dim)

        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim)
        # SeiT++ keeps a fixed sin-cos table for the decoder that its forward never reads; kept for the layout
        self.register_buffer("decoder_pos_embed", _with_cls_row(sincos_position_embedding(decoder_embed_dim, grid)))
        self.decoder_pos_embed_learned = nn.Parameter(torch.zeros(1, self.num_patches + 1, decoder_embed_dim))
        self.decoder_blocks = nn.ModuleList(
            Block(
                decoder_embed_dim,
                decoder_num_heads,
                mlp_ratio,
                qkv_bias=True,
                norm_layer=norm,
                proj_drop=dropout,
                attn_drop=dropout,
            )
            for _ in range(decoder_depth)
        )
        self.decoder_norm = norm(decoder_embed_dim)
        self.mlm_layer = TokenPredictor(decoder_embed_dim, in_chans, codebook_size, patch_size, img_size)
        self._init_weights()

    def _init_weights(self) -> None:
        """SeiT++'s (MAE's) scheme: xavier-uniform linears and stem, N(0, 0.02) class token, unit LayerNorms."""
        self.apply(init_like_reference)  # the stem is the only convolution
        nn.init.normal_(self.cls_token, std=0.02)

    def sample_masks(self, batch: int, generator: torch.Generator | None = None) -> TokenMasks:
        return sample_masks(batch, self.num_patches, self.mask_ratio, generator, self.cls_token.device)

    def forward_encoder(self, ids: torch.Tensor, masks: TokenMasks) -> torch.Tensor:
        """Encoder output [B, 1 + kept, D] (class token first, kept patches in raster order)."""
        b, m = ids.shape[0], self.img_size
        if ids.shape[1:] != (m, m):
            raise SeitError(f"MTM: expected token ids [B, {m}, {m}], got {list(ids.shape)}")
        kept = ~masks.dropped
        counts = kept.sum(1)
        if bool((counts != counts[0]).any()) or bool((masks.dropped & ~masks.masked).any()):
            raise SeitError("MTM masks: every sample must drop the same number of patches, all of them masked")
        vectors = self.token_emb(ids.reshape(b, -1)).transpose(1, 2).reshape(b, -1, m, m)
        x = self.patch_embed(vectors)
        x = torch.where(masks.masked.unsqueeze(-1), self.mask_token_label.to(x.dtype), x)
        x = (x + self.pos_embed[:, 1:])[kept].reshape(b, int(counts[0]), x.shape[-1])
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(b, -1, -1)
        return self.norm(self.blocks(torch.cat([cls, x], dim=1)))

    def forward_decoder(self, latent: torch.Tensor, masks: TokenMasks) -> torch.Tensor:
        """Logits [B, m*m, codebook] for every token of the crop, raster order."""
        x = self.decoder_embed(latent)
        cls = x[:, :1]
        patches = cls.expand(-1, self.num_patches, -1).clone()
        patches[~masks.dropped] = x[:, 1:].reshape(-1, x.shape[-1])
        patches = torch.where(masks.masked.unsqueeze(-1), cls, patches)
        x = torch.cat([cls, patches], dim=1) + self.decoder_pos_embed_learned
        for block in self.decoder_blocks:
            x = block(x)
        x = self.decoder_norm(x)
        return self.mlm_layer(x[:, 1:], self.token_emb.word_embeddings.weight.detach())

    def forward_logits(self, ids: torch.Tensor, masks: TokenMasks) -> torch.Tensor:
        return self.forward_decoder(self.forward_encoder(ids, masks), masks)

    def loss(self, ids: torch.Tensor, logits: torch.Tensor, masks: TokenMasks) -> torch.Tensor:
        masked = masks.masked.view(-1, self.grid, self.grid)
        return masked_token_loss(logits, ids, masked, self.smoothing, self.bce_loss)

    def forward(
        self, ids: torch.Tensor, masks: TokenMasks | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """MTM loss on token ids [B, m, m]; masks are drawn (from ``generator``) unless given."""
        if masks is None:
            masks = self.sample_masks(ids.shape[0], generator)
        return self.loss(ids, self.forward_logits(ids, masks), masks)


def _with_cls_row(table: torch.Tensor) -> torch.Tensor:
    """Prepend the all-zero class-token row SeiT++'s (MAE's) sin-cos tables carry."""
    return torch.cat([torch.zeros_like(table[:, :1]), table], dim=1)


def _mtm_cfg() -> dict[str, Any]:
    # num_classes -1: timm's builder passes no class count (there is no head); input_size sets in_chans
    return {
        "url": "",
        "num_classes": -1,
        "input_size": (32, 28, 28),
        "mean": (0.0,) * 32,
        "std": (1.0,) * 32,
        "first_conv": "patch_embed.proj",
        "classifier": "",
        "license": "apache-2.0",
    }


default_cfgs = generate_default_cfgs({name: _mtm_cfg() for name in MTM_MODELS})


def _create(variant: str, pretrained: bool, model_args: dict[str, Any], kwargs: dict[str, Any]) -> MaskedTokenViT:
    if pretrained:
        raise SeitError(
            f"{variant}: seit downloads no weights; load SeiT++'s checkpoint with "
            "seit.interop.seitpp_checkpoints.mtm_checkpoint_filter_fn"
        )
    return build_model_with_cfg(MaskedTokenViT, variant, False, **dict(model_args, **kwargs))


@register_model
def mae_token_vit_base_patch16_dec512d4b_k2s2_vitvqgan_32(pretrained: bool = False, **kwargs) -> MaskedTokenViT:
    """SeiT++'s MTM model: ViT-B encoder on 28x28 ViT-VQGAN codes, kernel-2 stride-2 stem, 512-wide 4-block decoder."""
    args = dict(embed_dim=768, depth=12, num_heads=12, decoder_embed_dim=512, decoder_depth=4, decoder_num_heads=16)
    return _create("mae_token_vit_base_patch16_dec512d4b_k2s2_vitvqgan_32", pretrained, args, kwargs)


@register_model
def mtm_token_vit_tiny_test(pretrained: bool = False, **kwargs) -> MaskedTokenViT:
    """A CPU-sized MTM model for tests and smoke runs (width 64, 2 blocks; decoder width 32, 1 block)."""
    args = dict(embed_dim=64, depth=2, num_heads=4, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)
    return _create("mtm_token_vit_tiny_test", pretrained, args, kwargs)
