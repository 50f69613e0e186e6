"""Layer-wise learning-rate decay for fine-tuning ViTs (SeiT++'s ``--layer_decay``, after BEiT/MAE).

A pre-trained ViT's lower blocks hold general features that fine-tuning should move little: block ``i`` of
``N`` trains at ``lr * decay ** (N + 1 - (i + 1))``, the stem, class token and position embedding at
``lr * decay ** (N + 1)``, and everything above the blocks (final norm, head) at ``lr``. The groups carry
``lr_scale``, which timm's schedulers multiply into every group's learning rate at each step.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from torch import nn

_INPUT_PARAMS = ("cls_token", "pos_embed")  # with everything under patch_embed: layer 0
_BLOCK = re.compile(r"blocks\.(\d+)\.")


def layer_id(name: str, num_layers: int) -> int:
    """0 for the input layers, ``i + 1`` for ``blocks.i``, ``num_layers`` (= blocks + 1) for the rest."""
    if name in _INPUT_PARAMS or name.startswith("patch_embed"):
        return 0
    block = _BLOCK.match(name)
    return int(block.group(1)) + 1 if block else num_layers


def layer_decay_param_groups(
    model: nn.Module, weight_decay: float, layer_decay: float, no_weight_decay: Iterable[str] | None = None
) -> list[dict[str, Any]]:
    """Optimizer param groups, one per (layer, decayed or not), for a model with ``blocks``.

    Biases, norms (every 1-D tensor) and the names in ``no_weight_decay`` (default: the model's
    ``no_weight_decay()``, for timm ViTs the class token and position embedding) get no weight decay.
    Frozen parameters are left out. Each group is named ``layer_<id>_decay`` / ``layer_<id>_no_decay`` in
    the order its first parameter appears, as SeiT++'s ``param_groups_lrd`` builds them.
    """
    if not hasattr(model, "blocks"):
        raise ValueError(f"layer decay needs a model with transformer 'blocks'; {type(model).__name__} has none")
    num_layers = len(model.blocks) + 1
    if no_weight_decay is None:
        no_weight_decay = model.no_weight_decay() if hasattr(model, "no_weight_decay") else ()
    exempt = set(no_weight_decay)
    groups: dict[str, dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decays = not (param.ndim == 1 or name in exempt)
        layer = layer_id(name, num_layers)
        key = f"layer_{layer}_{'decay' if decays else 'no_decay'}"
        if key not in groups:
            groups[key] = {
                "name": key,
                "lr_scale": layer_decay ** (num_layers - layer),
                "weight_decay": weight_decay if decays else 0.0,
                "params": [],
            }
        groups[key]["params"].append(param)
    return list(groups.values())
