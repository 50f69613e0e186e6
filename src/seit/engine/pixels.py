"""Images for the pixel baseline: the token path's train crops (random resized crop + flip) or the eval centre crop.

Batches come out as uint8 [B, 3, S, S] (normalisation and Mixup/CutMix happen on the device, as for tokens). A
folder whose decoded pixels fit in ``cache_bytes`` is decoded once into memory and its batches are cut in the
training process (no worker processes taking cores from the model); a larger one is decoded image by image
every epoch, in DataLoader workers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torchvision.transforms import v2

from seit.augment.config import AugmentConfig
from seit.augment.crop import sample_train_crops
from seit.errors import SeitError
from seit.images import ImageSkipped, list_images, open_rgb

log = logging.getLogger(__name__)

EVAL_CROP_RATIO = 0.875  # resize to S / 0.875, then centre-crop S: DeiT's (and SeiT's) eval geometry
INTERPOLATION = v2.InterpolationMode.BICUBIC
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalise(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 [B, 3, S, S] -> float, ImageNet mean/std (as timm's DeiT), on ``device``."""
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1) * 255
    return (images.to(device, non_blocking=True).float() - mean) / std


def train_crops(images: Sequence[torch.Tensor], size: int, augment: AugmentConfig) -> torch.Tensor:
    """uint8 [3, H_i, W_i] images (any sizes) -> their random resized (and maybe flipped) crops [B, 3, size, size].

    One draw of the token path's sampler (``sample_train_crops``) for the whole batch, each box a fraction of
    its own image; torch's global generator, as the rest of a training step.
    """
    heights = torch.tensor([image.shape[-2] for image in images])
    widths = torch.tensor([image.shape[-1] for image in images])
    boxes, flip = sample_train_crops(
        augment, len(images), heights, widths, torch.default_generator, torch.device("cpu")
    )
    crops = torch.empty(len(images), 3, size, size, dtype=torch.uint8)
    for crop, image, (top, left, height, width) in zip(crops, images, boxes.tolist()):
        crop.copy_(
            v2.functional.resized_crop(
                image, top, left, height, width, [size, size], interpolation=INTERPOLATION, antialias=True
            )
        )
    if flip is not None:
        crops[flip] = crops[flip].flip(-1)
    return crops


class PixelDataset(torch.utils.data.Dataset):
    """An image folder as uint8 crops: with ``augment``, training crops and flips drawn by the token path's own
    sampler for each batch (``train_crops``: same area, aspect and flip distributions); without, the eval
    centre crop.

    ``cache_bytes`` > 0: the folder is decoded once, here, when its decoded RGB pixels take at most that many
    bytes (``cached`` tells); past the limit decoding stops, what was decoded is dropped and every fetch
    decodes its image again. Training draws use torch's global generator: seeded per DataLoader worker, or per
    step by the training loop when there are no workers.
    """

    def __init__(self, source: str, size: int, *, augment: AugmentConfig | None = None, cache_bytes: int = 0) -> None:
        listing = list_images(source)  # refuses a folder or list file without images
        self.samples = listing.samples
        self.class_names = list(listing.classes)
        self.labels = np.array([s.label for s in self.samples], dtype=np.int64)
        if (self.labels < 0).any():
            raise SeitError(f"{source}: the pixel baseline needs labelled images (an ImageFolder tree or a list file)")
        self.size = size
        self.augment = augment
        self.eval_transform = v2.Compose(
            [v2.Resize(int(size / EVAL_CROP_RATIO), interpolation=INTERPOLATION, antialias=True), v2.CenterCrop(size)]
        )
        self.decoded = self._decode_all(source, cache_bytes) if cache_bytes > 0 else None

    @property
    def cached(self) -> bool:
        return self.decoded is not None

    def _decode_all(self, source: str, limit: int) -> list[torch.Tensor] | None:
        decoded, total = [], 0
        for i in range(len(self.samples)):
            image = self._decode(i)
            total += image.numel()
            if total > limit:
                log.info(
                    "%s: decoded images take over %.1f MiB (--pixel-cache-mb): decoding them every epoch instead",
                    source,
                    limit / 2**20,
                )
                return None
            decoded.append(image)
        log.info("%s: %d images decoded into memory (%.0f MiB)", source, len(decoded), total / 2**20)
        return decoded

    def _decode(self, i: int) -> torch.Tensor:
        sample = self.samples[i]
        try:
            image = open_rgb(sample.path)
        except ImageSkipped as e:
            raise SeitError(f"{sample.path}: cannot be read ({e.reason}); remove it from the training folder") from e
        return v2.functional.pil_to_tensor(image)

    def image(self, i: int) -> torch.Tensor:
        """The whole image ``i``, uint8 [3, H, W]."""
        return self.decoded[i] if self.decoded is not None else self._decode(i)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, int]]:
        """A batch (the DataLoader fetches whole batches through this): its training crops drawn together."""
        images = [self.image(i) for i in indices]
        if self.augment is None:
            crops = [self.eval_transform(image) for image in images]
        else:
            crops = list(train_crops(images, self.size, self.augment))
        return [(crop, int(self.labels[i])) for crop, i in zip(crops, indices)]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.__getitems__([i])[0]
