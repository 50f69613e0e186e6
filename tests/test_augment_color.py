import torch

from seit.augment.color import color_adapt, emb_noise


def test_emb_noise_has_seit_scale_and_std():
    noise = emb_noise(torch.Size((512, 14, 14, 8)), scale=0.5, std=2.0, generator=torch.Generator().manual_seed(0))
    per_channel = noise.mean(dim=(1, 2))  # the offset, plus the element noise averaged over 196 positions
    assert abs(per_channel.var().item() - (0.5**2 + 2.0**2 / 196)) < 0.02
    grain = noise - noise.mean(dim=(1, 2), keepdim=True)
    assert abs(grain.std().item() - 2.0) < 0.02
    assert abs(noise.std().item() - (0.5**2 + 2.0**2) ** 0.5) < 0.03
    assert abs(noise.mean().item()) < 0.02


def test_color_adapt_takes_the_reference_statistics():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 7, 7, 4, generator=g) * 3 + 1
    ref = torch.randn(6, 7, 7, 4, generator=g) * 0.5 - 2
    out = color_adapt(x, ref)
    torch.testing.assert_close(out.mean(dim=(1, 2)), ref.mean(dim=(1, 2)), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std(dim=(1, 2)), ref.std(dim=(1, 2)), atol=1e-5, rtol=1e-5)
    # the pattern is kept: a per-channel affine map of the input
    seit = (x - x.mean((1, 2), True)) / x.std((1, 2), keepdim=True) * ref.std((1, 2), keepdim=True) + ref.mean(
        (1, 2), True
    )
    torch.testing.assert_close(out, seit, atol=1e-5, rtol=1e-5)
    constant = torch.ones(1, 7, 7, 4)  # one code everywhere: std 0, SeiT would produce NaN
    assert torch.isfinite(color_adapt(constant, ref[:1])).all()


def test_noise_comes_from_the_given_generator_alone():
    """Found by the mutation pass: a resumed run re-draws the noise from (seed, step)."""
    draws = []
    for global_seed in (0, 1):
        torch.manual_seed(global_seed)
        draws.append(emb_noise(torch.Size((3, 2, 2, 4)), 1.0, 0.5, torch.Generator().manual_seed(8)))
    torch.testing.assert_close(draws[0], draws[1], rtol=0, atol=0)
