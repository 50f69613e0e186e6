"""Token ViTs in timm's registry: ``import seit.models`` registers them.

``import seit`` alone does not import torch or timm (so the CLI starts fast); importing this package
registers ``deit_{tiny,small,base}_token_{32,4}`` (and their stride-1 ``..._s1`` variants for small grids)
and ``deit_{tiny,small,base}_pixel_{16,8}`` with timm,
after which ``timm.create_model("deit_small_token_32", img_size=28, num_classes=1000)`` works.
"""

from seit.models.checkpoint import Classifier, ClassifierMeta, load_classifier, save_classifier
from seit.models.finetune import (
    FinetuneLoad,
    adapt_state_dict,
    finetune_from,
    load_for_finetune,
    resample_pos_embed,
    reset_head,
)
from seit.models.mtm import MTM_MODELS, MaskedTokenViT, MaskRatio, TokenMasks, masked_token_loss, sample_masks
from seit.models.stem import StemAdaptor
from seit.models.vit import (
    DEIT_SIZES,
    PIXEL_MODELS,
    STRIDE1_TOKEN_MODELS,
    TOKEN_MODELS,
    check_model_args,
    check_token_patches,
    token_patch_side,
    token_stem_stride,
)

__all__ = [
    "DEIT_SIZES",
    "MTM_MODELS",
    "PIXEL_MODELS",
    "STRIDE1_TOKEN_MODELS",
    "TOKEN_MODELS",
    "Classifier",
    "ClassifierMeta",
    "FinetuneLoad",
    "MaskRatio",
    "MaskedTokenViT",
    "StemAdaptor",
    "TokenMasks",
    "adapt_state_dict",
    "check_model_args",
    "check_token_patches",
    "finetune_from",
    "load_classifier",
    "load_for_finetune",
    "masked_token_loss",
    "resample_pos_embed",
    "reset_head",
    "sample_masks",
    "save_classifier",
    "token_patch_side",
    "token_stem_stride",
]
