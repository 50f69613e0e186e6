"""Images for the pixel baseline: the token path's train crops (random resized crop + flip) or the eval centre crop.

Workers return uint8 [3, S, S] (normalisation and Mixup/CutMix happen on the device, as for tokens).
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms import v2

from seit.augment.config import AugmentConfig
from seit.augment.crop import sample_train_crops
from seit.errors import SeitError
from seit.images import ImageSkipped, list_images, open_rgb

EVAL_CROP_RATIO = 0.875  # resize to S / 0.875, then centre-crop S: DeiT's (and SeiT's) eval geometry
INTERPOLATION = v2.InterpolationMode.BICUBIC
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalise(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 [B, 3, S, S] -> float, ImageNet mean/std (as timm's DeiT), on ``device``."""
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1) * 255
    return (images.to(device, non_blocking=True).float() - mean) / std


class PixelDataset(torch.utils.data.Dataset):
    """An image folder as uint8 crops: with ``augment``, training crops and flips drawn by the token path's own
    sampler (``sample_train_crops``: same area, aspect and flip distributions); without, the eval centre crop.

    Training draws use torch's global generator: seeded per DataLoader worker, or per step by the training loop
    when there are no workers.
    """

    def __init__(self, source: str, size: int, *, augment: AugmentConfig | None = None) -> None:
        listing = list_images(source)
        if not listing.samples:
            raise SeitError(f"{source}: no images found")
        self.samples = listing.samples
        self.class_names = list(listing.classes)
        self.labels = np.array([s.label for s in self.samples], dtype=np.int64)
        if (self.labels < 0).any():
            raise SeitError(f"{source}: the pixel baseline needs labelled images (an ImageFolder tree or a list file)")
        self.size = size
        self.augment = augment
        self.eval_transform = v2.Compose(
            [
                v2.PILToTensor(),
                v2.Resize(int(size / EVAL_CROP_RATIO), interpolation=INTERPOLATION, antialias=True),
                v2.CenterCrop(size),
            ]
        )

    def train_crop(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 [3, H, W] -> a random resized (and maybe flipped) [3, size, size] crop, as the token path's."""
        boxes, flip = sample_train_crops(
            self.augment, 1, image.shape[-2], image.shape[-1], torch.default_generator, torch.device("cpu")
        )
        top, left, height, width = boxes[0].tolist()
        crop = v2.functional.resized_crop(
            image, top, left, height, width, [self.size, self.size], interpolation=INTERPOLATION, antialias=True
        )
        return v2.functional.horizontal_flip(crop) if flip is not None and flip[0] else crop

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        sample = self.samples[i]
        try:
            image = open_rgb(sample.path)
        except ImageSkipped as e:
            raise SeitError(f"{sample.path}: cannot be read ({e.reason}); remove it from the training folder") from e
        if self.augment is None:
            return self.eval_transform(image), int(self.labels[i])
        return self.train_crop(v2.functional.pil_to_tensor(image)), int(self.labels[i])
