"""Metrics against paired ground truth: L1, PSNR and SSIM of translated images.

Images are tensors ``(N, C, H, W)`` in [-1, 1], clamped to it first as a saved image is (the
three metrics score the same pixels; a NaN pixel stays NaN, so a prediction holding one scores
NaN rather than a plausible figure); PSNR and SSIM are computed on [0, 1]
(data range 1) per image and averaged, SSIM with the usual 11x11 Gaussian window
(sigma 1.5, K1 = 0.01, K2 = 0.03) per channel, as in Wang et al. (2004).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _unit(x: torch.Tensor) -> torch.Tensor:
    return ((x.float() + 1) / 2).clamp(0, 1)


def l1(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean absolute error in the [-1, 1] value range."""
    return float((pred.float().clamp(-1, 1) - target.float().clamp(-1, 1)).abs().mean())


def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean per-image PSNR in dB on [0, 1] images (identical images: capped at 100 dB)."""
    mse = ((_unit(pred) - _unit(target)) ** 2).flatten(1).mean(1)
    return float((10 * torch.log10(1.0 / mse.clamp_min(1e-10))).clamp(max=100).mean())


def ssim(pred: torch.Tensor, target: torch.Tensor, window: int = 11, sigma: float = 1.5) -> float:
    """Mean SSIM over images and channels (Gaussian window, valid region only)."""
    x, y = _unit(pred), _unit(target)
    c = x.shape[1]
    window = min(window, x.shape[-1], x.shape[-2])
    window -= 1 - window % 2  # odd, centred on a pixel (an 8 px image: 7, not 8)
    coords = torch.arange(window, dtype=torch.float32) - (window - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = (g / g.sum()).to(x.device)
    kernel = (g[:, None] * g[None, :]).expand(c, 1, window, window).contiguous()

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, kernel, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x**2
    syy = blur(y * y) - mu_y**2
    sxy = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return float(s.mean())


#: The names :func:`paired_scores` gives (after its prefix).
PAIRED_SCORES = ("l1", "psnr", "ssim")


def paired_scores(pred: torch.Tensor, target: torch.Tensor, prefix: str = "") -> dict[str, float]:
    """``{prefix}l1``, ``{prefix}psnr``, ``{prefix}ssim`` of ``pred`` against ``target``."""
    return {
        f"{prefix}l1": l1(pred, target),
        f"{prefix}psnr": psnr(pred, target),
        f"{prefix}ssim": ssim(pred, target),
    }
