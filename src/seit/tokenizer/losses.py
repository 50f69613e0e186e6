"""Optional training losses: LPIPS-style perceptual distance and a PatchGAN discriminator.

The perceptual network is never downloaded: the user supplies VGG16 weights (torchvision's state dict,
e.g. ``vgg16-397923af.pth``, or its ``features`` part) and optionally the LPIPS linear heads (the
``lpips`` package's ``weights/v0.1/vgg.pth``). Without heads every channel weighs the same, which is
LPIPS's "baseline" variant.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from seit.tokenizer.config import TokenizerError
from seit.utils.serialization import CheckpointError, load_weights, safe_torch_load

# torchvision's VGG16 "D" configuration; feature taps after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
VGG16_TAPS = (3, 8, 15, 22, 29)
TAP_CHANNELS = (64, 128, 256, 512, 512)
# LPIPS maps [-1, 1] inputs to ImageNet statistics with this shift and scale.
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)


def vgg16_features() -> nn.Sequential:
    """VGG16's convolutional trunk up to relu5_3, indexed exactly like ``torchvision.models.vgg16().features``."""
    layers: list[nn.Module] = []
    channels = 3
    for item in VGG16_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, item, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = item
    return nn.Sequential(*layers)


def _read_tensors(path: str | os.PathLike, what: str) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise TokenizerError(f"{path}: {what} not found; nothing is downloaded, give the path of a local copy")
    try:
        sd = load_weights(path) if path.suffix == ".safetensors" else safe_torch_load(path)
    except CheckpointError as e:
        raise TokenizerError(f"{what}: {e}") from e
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise TokenizerError(f"{path}: {what} must be a state dict, found {type(sd).__name__}")
    return sd


class PerceptualLoss(nn.Module):
    """Mean over the batch of sum over VGG taps of (head-weighted) squared differences of unit-normalised features."""

    def __init__(self, features: nn.Sequential, heads: list[torch.Tensor] | None = None) -> None:
        super().__init__()
        self.features = features.eval().requires_grad_(False)
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1))
        weights = heads if heads is not None else [torch.ones(c) for c in TAP_CHANNELS]
        for i, w in enumerate(weights):
            self.register_buffer(f"head{i}", w.reshape(1, -1, 1, 1).float())

    @classmethod
    def from_files(cls, vgg_path: str | os.PathLike, heads_path: str | os.PathLike | None = None) -> PerceptualLoss:
        sd = _read_tensors(vgg_path, "VGG16 weights (--perceptual-weights)")
        if any(k.startswith("features.") for k in sd):
            sd = {k[len("features.") :]: v for k, v in sd.items() if k.startswith("features.")}
        features = vgg16_features()
        trunk = {k: v for k, v in sd.items() if k.split(".")[0].isdigit()}
        try:
            features.load_state_dict(trunk, strict=True)
        except RuntimeError as e:
            raise TokenizerError(
                f"{vgg_path}: not VGG16 weights in torchvision's layout (features.N.weight/bias): "
                f"{' '.join(str(e).split())[:300]}"
            ) from e
        heads = None
        if heads_path is not None:
            hsd = _read_tensors(heads_path, "LPIPS heads (--lpips-weights)")
            try:
                heads = [hsd[f"lin{i}.model.1.weight"].flatten() for i in range(len(VGG16_TAPS))]
            except KeyError as e:
                raise TokenizerError(f"{heads_path}: not LPIPS VGG heads (missing {e}); expected lin0..lin4") from e
            if [len(h) for h in heads] != list(TAP_CHANNELS):
                raise TokenizerError(f"{heads_path}: LPIPS heads have {[len(h) for h in heads]} channels")
        return cls(features, heads)

    def forward(self, images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1]; returns the batch mean."""
        n = len(images)
        x = (torch.cat([images, reference]).float() * 2 - 1 - self.shift) / self.scale
        total = torch.zeros(n, device=images.device)
        tap = 0
        for i, layer in enumerate(self.features[: VGG16_TAPS[-1] + 1]):
            x = layer(x)
            if i == VGG16_TAPS[tap]:
                f = x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                diff = (f[:n] - f[n:]).pow(2) * getattr(self, f"head{tap}")
                total = total + diff.sum(1).mean((1, 2))
                tap += 1
        return total.mean()


class PatchDiscriminator(nn.Module):
    """PatchGAN (pix2pix / taming-transformers): strided 4x4 convs, BatchNorm, LeakyReLU, a logit map."""

    def __init__(self, layers: int = 3, channels: int = 64) -> None:
        super().__init__()
        seq: list[nn.Module] = [nn.Conv2d(3, channels, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < layers else 1
            seq += [
                nn.Conv2d(channels * prev, channels * mult, 4, stride, 1, bias=False),
                nn.BatchNorm2d(channels * mult),
                nn.LeakyReLU(0.2, True),
            ]
        seq.append(nn.Conv2d(channels * mult, 1, 4, 1, 1))
        self.main = nn.Sequential(*seq)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.main(images * 2 - 1)


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def generator_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    return -logits_fake.mean()


def adaptive_weight(nll: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor) -> torch.Tensor:
    """Balance the adversarial gradient against the reconstruction gradient at the decoder's last layer."""
    nll_grad = torch.autograd.grad(nll, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    return (nll_grad.norm() / (g_grad.norm() + 1e-4)).clamp(0.0, 1e4).detach()
