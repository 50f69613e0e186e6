"""SeiT's Stem-Adaptor: the one layer that differs between a token ViT and a pixel ViT."""

from __future__ import annotations

from timm.layers import PatchEmbed
from torch import nn


class StemAdaptor(PatchEmbed):
    """Conv2d(kernel 4, stride 2, padding 1) over the [B, D, m, m] token-embedding map -> (m // 2)^2 patches.

    A 32x32 token grid cropped to 28x28 gives 14x14 = 196 patches, the same sequence length as a 224 px
    image with 16 px patches, so the transformer after the stem is an unchanged DeiT. The windows overlap
    (kernel 4 > stride 2), letting every patch see the codes around it. ``patch_size`` is the stride; any
    crop size works (odd sizes too: 7 -> 3), and ``kernel_size - 2 * padding == patch_size`` keeps the
    output at ``m // patch_size`` like timm's ``PatchEmbed`` grid. The kernel defaults to the stride + 2
    (one code of overlap on each side): SeiT's kernel 4 at stride 2, kernel 3 at stride 1 (small grids).
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] = 28,
        patch_size: int = 2,
        in_chans: int = 32,
        embed_dim: int = 768,
        kernel_size: int | None = None,
        padding: int = 1,
        bias: bool = True,
        device=None,
        dtype=None,
        **kwargs,
    ) -> None:
        if kernel_size is None:
            kernel_size = patch_size + 2 * padding
        if kernel_size - 2 * padding != patch_size:
            raise ValueError(
                f"StemAdaptor: kernel_size - 2 * padding must equal the stride (patch_size) so the output grid is "
                f"img_size // patch_size; got kernel {kernel_size}, padding {padding}, stride {patch_size}"
            )
        super().__init__(
            img_size=img_size,
            patch_size=patch_size,
            in_chans=in_chans,
            embed_dim=embed_dim,
            bias=bias,
            device=device,
            dtype=dtype,
            **kwargs,
        )
        self.proj = nn.Conv2d(
            in_chans,
            embed_dim,
            kernel_size=kernel_size,
            stride=patch_size,
            padding=padding,
            bias=bias,
            device=device,
            dtype=dtype,
        )

    def set_input_size(self, img_size=None, patch_size=None) -> None:
        """Change the token-crop size (the stem is size-agnostic); the stride is fixed."""
        if patch_size is not None and tuple(patch_size if isinstance(patch_size, tuple) else (patch_size,) * 2) != (
            self.patch_size
        ):
            raise ValueError("StemAdaptor: the stem stride is part of the architecture and cannot be changed")
        super().set_input_size(img_size=img_size)
