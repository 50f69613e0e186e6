"""Images for the pixel baseline: DeiT's train crops (random resized crop + flip) or the eval centre crop.

Workers return uint8 [3, S, S] (normalisation and Mixup/CutMix happen on the device, as for tokens).
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms import v2

from seit.errors import SeitError
from seit.images import ImageSkipped, list_images, open_rgb

EVAL_CROP_RATIO = 0.875  # resize to S / 0.875, then centre-crop S: DeiT's (and SeiT's) eval geometry
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalise(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 [B, 3, S, S] -> float, ImageNet mean/std (as timm's DeiT), on ``device``."""
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1) * 255
    return (images.to(device, non_blocking=True).float() - mean) / std


class PixelDataset(torch.utils.data.Dataset):
    """An image folder as uint8 crops; train crops take the token path's RRC range and flip probability."""

    def __init__(
        self,
        source: str,
        size: int,
        *,
        train: bool,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        hflip: float = 0.5,
    ) -> None:
        listing = list_images(source)
        if not listing.samples:
            raise SeitError(f"{source}: no images found")
        self.samples = listing.samples
        self.class_names = list(listing.classes)
        self.labels = np.array([s.label for s in self.samples], dtype=np.int64)
        if (self.labels < 0).any():
            raise SeitError(f"{source}: the pixel baseline needs labelled images (an ImageFolder tree or a list file)")
        interp = v2.InterpolationMode.BICUBIC
        if train:
            self.transform = v2.Compose(
                [
                    v2.PILToTensor(),
                    v2.RandomResizedCrop(size, interpolation=interp, antialias=True),
                    v2.RandomHorizontalFlip(),
                ]
            )
        else:
            self.transform = v2.Compose(
                [
                    v2.PILToTensor(),
                    v2.Resize(int(size / EVAL_CROP_RATIO), interpolation=interp, antialias=True),
                    v2.CenterCrop(size),
                ]
            )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        sample = self.samples[i]
        try:
            image = open_rgb(sample.path)
        except ImageSkipped as e:
            raise SeitError(f"{sample.path}: cannot be read ({e.reason}); remove it from the training folder") from e
        return self.transform(image), int(self.labels[i])
