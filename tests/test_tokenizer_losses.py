import pytest
import torch
import torch.nn.functional as F
from torchvision.models.vgg import cfgs, make_layers

from seit.tokenizer.config import TokenizerError
from seit.tokenizer.losses import PatchDiscriminator, PerceptualLoss, adaptive_weight, hinge_d_loss


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    """A randomly initialised VGG16 trunk saved as torchvision's state dict keys (``features.N.*``)."""
    torch.manual_seed(0)
    trunk = make_layers(cfgs["D"])
    path = tmp_path_factory.mktemp("vgg") / "vgg16.pth"
    torch.save({f"features.{k}": v for k, v in trunk.state_dict().items()}, path)
    return path, trunk


def reference_lpips(trunk, x, y, heads):
    """LPIPS written out with torchvision's own VGG16 trunk."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    a, b = ((t * 2 - 1 - shift) / scale for t in (x, y))
    total = 0
    for i, layer in enumerate(trunk[:30]):
        a, b = layer(a), layer(b)
        if i in (3, 8, 15, 22, 29):
            fa, fb = F.normalize(a, dim=1, eps=0), F.normalize(b, dim=1, eps=0)
            w = heads[(3, 8, 15, 22, 29).index(i)].view(1, -1, 1, 1)
            total = total + ((fa - fb) ** 2 * w).sum(1).mean((1, 2))
    return total.mean()


def test_perceptual_loss_equals_lpips_written_out(vgg_file, tmp_path):
    path, trunk = vgg_file
    heads = [torch.rand(c) for c in (64, 128, 256, 512, 512)]
    torch.save({f"lin{i}.model.1.weight": h.view(1, -1, 1, 1) for i, h in enumerate(heads)}, tmp_path / "lin.pth")
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        loss = PerceptualLoss.from_files(path, tmp_path / "lin.pth")(x, y)
        baseline = PerceptualLoss.from_files(path)(x, y)
        trunk.eval()
        torch.testing.assert_close(loss, reference_lpips(trunk, x, y, heads), rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(baseline, reference_lpips(trunk, x, y, [torch.ones_like(h) for h in heads]))
        assert PerceptualLoss.from_files(path)(x, x) == 0


def test_missing_or_wrong_weights_are_clear_errors(tmp_path):
    with pytest.raises(TokenizerError, match=r"vgg\.pth: VGG16 weights .* not found; nothing is downloaded"):
        PerceptualLoss.from_files(tmp_path / "vgg.pth")
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(TokenizerError, match=r"bad\.pth: not VGG16 weights in torchvision's layout"):
        PerceptualLoss.from_files(tmp_path / "bad.pth")


def test_discriminator_hinge_and_adaptive_weight():
    disc = PatchDiscriminator(layers=3, channels=8)
    logits = disc(torch.rand(2, 3, 32, 32))
    assert logits.shape == (2, 1, 2, 2)
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    assert hinge_d_loss(real, fake) == 0.5 * ((0 + 0.5) / 2 + (0 + 1.0) / 2)
    w = torch.nn.Parameter(torch.ones(3))
    weight = adaptive_weight((w * 2).sum(), (w * 4).sum(), w)  # |grad nll| / |grad g| = 2 / 4
    assert abs(float(weight) - 0.5) < 1e-3
