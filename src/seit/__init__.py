"""seit: storage-efficient vision training from discrete VQ tokens (SeiT, SeiT++).

Stages, one package each: ``seit.store`` (token datasets on disk), ``seit.tokenizer`` (ViT-VQGAN),
``seit.augment`` (token augmentation on the device), ``seit.models`` (token ViTs in timm's registry),
``seit.engine`` (training and evaluation), ``seit.interop`` (the SeiT release formats), ``seit.cli``.
"""

__version__ = "0.1.0"
