"""enhancing-transformers ViT-VQGAN checkpoints: Lightning state dicts and their yaml configs.

Its ``ViTVQ`` has exactly our parameter layout, so a state dict only needs its non-tokenizer entries
(``loss.*``: LPIPS and the discriminator) dropped. Dimensions come from the training yaml (both the
``encoder/decoder/quantizer`` form and the older ``hparams/qparams`` form) or from the tensor shapes.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from seit.tokenizer.config import TokenizerConfig, TokenizerError, TransformerConfig

PATCH_KEY = "encoder.to_patch_embedding.0.weight"
TOKENIZER_PREFIXES = ("encoder.", "decoder.", "quantizer.", "pre_quant.", "post_quant.")
# An older layers.py kept the final LayerNorms outside the transformers and named the output conv.
_OLD_LAYOUT = (
    (re.compile(r"^(encoder|decoder)\.norm\."), r"\1.transformer.norm."),
    (re.compile(r"^decoder\.to_pixel\.conv_out\."), "decoder.to_pixel.1."),
)


def vitvq_state_dict(obj: Any, source: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tokenizer's tensors from a Lightning checkpoint ``{"state_dict": ...}`` or a bare state dict.

    Keys may carry a wrapper prefix (``model.``, ``module.``); ``loss.*`` and other non-tokenizer entries
    are dropped; the older key layout is renamed to the current one.
    """
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise TokenizerError(f"{source}: expected a checkpoint dict with a 'state_dict', found {type(obj).__name__}")
    prefix = next((k[: -len(PATCH_KEY)] for k in obj if isinstance(k, str) and k.endswith(PATCH_KEY)), None)
    if prefix is None:
        raise TokenizerError(
            f"{source}: no ViT-VQGAN weights inside (no key ending in {PATCH_KEY!r}); is this an "
            "enhancing-transformers ViTVQ checkpoint?"
        )
    out: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not (isinstance(key, str) and key.startswith(prefix) and isinstance(value, torch.Tensor)):
            continue
        key = key[len(prefix) :]
        for pattern, repl in _OLD_LAYOUT:
            key = pattern.sub(repl, key)
        if key.startswith(TOKENIZER_PREFIXES):
            out[key] = value.detach()
    return out


def config_from_state_dict(sd: Mapping[str, torch.Tensor], source: str | os.PathLike = "state dict") -> TokenizerConfig:
    """Infer the dimensions from tensor shapes (``dim_head`` 64 as enhancing-transformers fixes it)."""
    try:
        _, channels, patch, patch_w = sd[PATCH_KEY].shape
        tokens = sd["encoder.en_pos_embedding"].shape[1]
        codebook_size, code_dim = sd["quantizer.embedding.weight"].shape
        encoder = _transformer_from_state_dict(sd, "encoder")
        decoder = _transformer_from_state_dict(sd, "decoder")
    except (KeyError, ValueError) as e:
        raise TokenizerError(
            f"{source}: incomplete ViT-VQGAN weights ({e}); pass its training yaml with --config"
        ) from e
    side = math.isqrt(tokens)
    if channels != 3 or patch != patch_w or side * side != tokens:
        raise TokenizerError(
            f"{source}: only square RGB models can be inferred from shapes (found {channels} channels, patch "
            f"{patch}x{patch_w}, {tokens} positions); pass its training yaml with --config"
        )
    return TokenizerConfig(side * patch, patch, encoder, decoder, codebook_size, code_dim)


def _transformer_from_state_dict(sd: Mapping[str, torch.Tensor], side: str) -> TransformerConfig:
    base = f"{side}.transformer.layers"
    depth = sum(1 for k in sd if re.fullmatch(rf"{re.escape(base)}\.\d+\.0\.fn\.to_qkv\.weight", k))
    qkv = sd[f"{base}.0.0.fn.to_qkv.weight"]
    dim = qkv.shape[1]
    inner = qkv.shape[0] // 3
    mlp_dim = sd[f"{base}.0.1.fn.net.0.weight"].shape[0]
    if f"{base}.0.0.fn.to_out.weight" not in sd:  # to_out is an Identity only for one head of width dim
        return TransformerConfig(dim, depth, 1, mlp_dim, dim_head=dim)
    if inner % 64:
        raise ValueError(f"{side} attention width {inner} is not a multiple of the reference's dim_head 64")
    return TransformerConfig(dim, depth, inner // 64, mlp_dim)


def config_from_yaml(path: str | os.PathLike) -> TokenizerConfig:
    """A ViTVQ training yaml of enhancing-transformers (``model.params``) as a config."""
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise TokenizerError(f"{path}: cannot read the yaml config ({e})") from e
    model = (doc or {}).get("model", doc) or {}
    target = str(model.get("target", "ViTVQ"))
    if not target.endswith(".ViTVQ") and target != "ViTVQ":
        raise TokenizerError(f"{path}: model target {target!r} is not supported; only ViTVQ (vector quantiser)")
    params = model.get("params", {})
    try:
        if "hparams" in params:  # older form: one shared set of transformer sizes
            h, q = params["hparams"], params["qparams"]
            enc = dec = _transformer_from_yaml(h)
            image_size, patch_size = h["image_size"], h["patch_size"]
        else:
            q = params["quantizer"]
            enc, dec = _transformer_from_yaml(params["encoder"]), _transformer_from_yaml(params["decoder"])
            image_size, patch_size = params["image_size"], params["patch_size"]
        if not q.get("use_norm", True) or q.get("use_residual", False):
            raise TokenizerError(
                f"{path}: only the L2-normalised single quantiser is supported (use_norm, no residual)"
            )
        size, patch = _square(image_size, path), _square(patch_size, path)
        return TokenizerConfig(size, patch, enc, dec, int(q["n_embed"]), int(q["embed_dim"]))
    except (KeyError, TypeError) as e:
        raise TokenizerError(f"{path}: not a ViTVQ config, missing model.params entry {e}") from e


def _square(value: Any, path: Path) -> int:
    if isinstance(value, list | tuple):
        if len(set(value)) != 1:
            raise TokenizerError(f"{path}: non-square sizes {value} are not supported")
        value = value[0]
    return int(value)


def _transformer_from_yaml(d: Mapping[str, Any]) -> TransformerConfig:
    sizes = (int(d["dim"]), int(d["depth"]), int(d["heads"]), int(d["mlp_dim"]))
    return TransformerConfig(*sizes, dim_head=int(d.get("dim_head", 64)))
