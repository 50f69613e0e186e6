import math

import numpy as np
import torch

from seit.tokenizer.metrics import CodeUsage, perplexity, psnr, ssim


def numpy_ssim(x: np.ndarray, y: np.ndarray, size: int = 11, sigma: float = 1.5) -> float:
    """SSIM written out: Gaussian-weighted statistics at every full window position, per channel."""
    r = np.arange(size) - (size - 1) / 2
    g = np.exp(-(r**2) / (2 * sigma**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for c in range(x.shape[0]):
        for i in range(x.shape[1] - size + 1):
            for j in range(x.shape[2] - size + 1):
                a, b = x[c, i : i + size, j : j + size], y[c, i : i + size, j : j + size]
                ma, mb = (w * a).sum(), (w * b).sum()
                va, vb = (w * (a - ma) ** 2).sum(), (w * (b - mb) ** 2).sum()
                cov = (w * (a - ma) * (b - mb)).sum()
                values.append(((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(values))


def test_ssim_matches_the_written_out_definition():
    rng = np.random.default_rng(0)
    x = rng.random((2, 3, 16, 18))
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1)
    ours = ssim(torch.from_numpy(y).float(), torch.from_numpy(x).float())
    for i in range(2):
        assert abs(float(ours[i]) - numpy_ssim(y[i], x[i])) < 1e-5
    assert torch.allclose(ssim(torch.from_numpy(x), torch.from_numpy(x)), torch.ones(2))


def test_psnr_definition_and_identical_images():
    x = torch.rand(3, 3, 8, 8)
    y = (x + 0.05).clamp(0, 1)
    mse = ((x - y) ** 2).flatten(1).mean(1)
    torch.testing.assert_close(psnr(y, x), 10 * torch.log10(1 / mse))
    assert torch.equal(psnr(x, x), torch.full((3,), 100.0))


def test_code_usage_and_perplexity():
    usage = CodeUsage(8)
    usage.update(torch.tensor([[0, 1], [1, 1]]))
    usage.update(torch.tensor([3]))
    assert usage.used == 3 and usage.usage == 3 / 8
    p = np.array([1, 3, 1]) / 5
    assert math.isclose(usage.perplexity, math.exp(-(p * np.log(p)).sum()))
    assert perplexity(torch.tensor([5, 5, 5, 5])) == 4.0 and perplexity(torch.zeros(3, dtype=torch.long)) == 0.0
