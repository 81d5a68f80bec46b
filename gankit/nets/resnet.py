"""The `resnet` family: a normalisation-free residual GAN after R3GAN (Huang, Gokaslan, Kuleshov,
Tompkin, NeurIPS 2024, "The GAN is dead; long live the GAN! A Modern GAN Baseline"), sized for a
CPU. The facts it follows, not its code:

- Each resolution holds `blocks` inverted-bottleneck residual blocks, x + conv1x1(act(gconv3x3(act(
  conv1x1(x))))): the 1x1 expands the channels 2x, the 3x3 is grouped (16 channels per group), the
  last 1x1 brings them back. No normalisation anywhere; biases and leaky ReLU (0.2).
- Fix-up initialisation: the last convolution of every residual branch starts at zero and the
  others at He's scale times L^(-1/4) (L blocks in the network, 3 convolutions per branch), so
  every block starts as the identity and deep stacks train without normalisation.
- Resampling by a [1, 2, 1] x [1, 2, 1] low-pass filter: nearest-neighbour up then the filter in G,
  the filter then 2x2 averaging down in D; a 1x1 convolution changes the channels between
  resolutions. No transposed convolutions, so no checkerboard.
- G: z -> a linear layer to the first map (4x4, or 7x7 for 28x28 images) -> resolutions doubling to
  the image -> 1x1 convolution -> tanh. D mirrors it down to that map, then a linear layer to
  features and one to the logit (the projection and AC-GAN variants take those features).
- G's last 1x1 convolution (to the image's channels) starts at zero too, so G's first images are
  flat grey with its tanh unsaturated. R3GAN's G has no output non-linearity; gankit keeps the tanh
  (every image in [-1, 1]), and a He-initialised layer before it put pre-tanh values of std 1.9 at
  64 px (a fifth of the pixels beyond ±0.99, where the tanh passes almost no gradient): a D that
  won at once then drove G's output white for good (bench/SATURATION.md).

Channels: `width` (g_width, d_width) at the image's resolution, doubling per halving, capped at 8x.
The objective R3GAN pairs it with is `rpgan` with `r1` and `r2` (gankit.nets.losses).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .models import Discriminator, Generator

SLOPE = 0.2
GROUP = 16  # channels per group of the grouped 3x3 convolution
EXPAND = 2  # the bottleneck's expansion


class Blur(nn.Module):
    """The [1, 2, 1] x [1, 2, 1] / 16 low-pass filter, per channel (a fixed buffer, not a weight)."""

    def __init__(self):
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", (k[:, None] * k[None, :] / 16).expand(1, 1, 3, 3).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        return F.conv2d(x, self.kernel.to(x.dtype).expand(c, 1, 3, 3), padding=1, groups=c)


class Up(nn.Module):
    """1x1 convolution to the next resolution's channels, nearest 2x, the filter."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv, self.blur = nn.Conv2d(cin, cout, 1), Blur()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blur(F.interpolate(self.conv(x), scale_factor=2.0, mode="nearest"))


class Down(nn.Module):
    """The filter, 2x2 averaging, 1x1 convolution to the next resolution's channels."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.blur, self.conv = Blur(), nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.avg_pool2d(self.blur(x), 2))


class Block(nn.Module):
    """x + conv1x1(act(grouped conv3x3(act(conv1x1(x))))), the last convolution zero at the start."""

    def __init__(self, ch: int, total_blocks: int):
        super().__init__()
        hidden = ch * EXPAND
        self.expand = nn.Conv2d(ch, hidden, 1)
        self.mix = nn.Conv2d(hidden, hidden, 3, padding=1, groups=max(1, hidden // GROUP))
        self.project = nn.Conv2d(hidden, ch, 1, bias=False)
        scale = total_blocks ** (-1 / (2 * 3 - 2))  # fix-up: L^(-1/(2m-2)) for m = 3 convolutions per branch
        for conv in (self.expand, self.mix):
            nn.init.kaiming_normal_(conv.weight, a=SLOPE, nonlinearity="leaky_relu")
            conv.weight.data.mul_(scale)
            nn.init.zeros_(conv.bias)
        nn.init.zeros_(self.project.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.expand(x), SLOPE)
        h = F.leaky_relu(self.mix(h), SLOPE)
        return x + self.project(h)


def _he(net: nn.Sequential) -> None:
    """He initialisation of the layers outside the residual branches (the blocks set their own)."""
    for m in net:
        layer = m.conv if isinstance(m, (Up, Down)) else m
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_normal_(layer.weight, a=SLOPE, nonlinearity="leaky_relu")
            nn.init.zeros_(layer.bias)


def plan(size: int) -> tuple[int, int]:
    """(the first map's side, the number of resolutions) for images of side `size`."""
    first = 7 if size == 28 else 4
    return first, int(round(math.log2(size / first))) + 1


def channels(width: int, resolutions: int) -> list[int]:
    """Channels per resolution from the first map to the image: width at the image, doubling per
    halving, capped at 8x width."""
    return [width * min(8, 2 ** (resolutions - 1 - i)) for i in range(resolutions)]


def family(size: int):
    """The builder of the family at `size` (28, 32, 64, 128)."""
    first, n = plan(size)

    def build(cfg) -> tuple[Generator, Discriminator]:
        c, blocks = cfg.channels, cfg.blocks
        img_shape = (c, size, size)
        total = blocks * (n - 1)
        ch = channels(cfg.g_width, n)
        g: list[nn.Module] = [nn.Linear(cfg.z_dim, ch[0] * first * first), nn.Unflatten(1, (ch[0], first, first)),
                              nn.LeakyReLU(SLOPE)]
        for i in range(n - 1):  # (the image's own resolution holds no blocks: a CPU's budget goes below it)
            g += [Block(ch[i], total) for _ in range(blocks)] + [Up(ch[i], ch[i + 1])]
        to_image = nn.Conv2d(ch[-1], c, 1)
        g += [nn.LeakyReLU(SLOPE), to_image, nn.Tanh()]
        ch = channels(cfg.d_width, n)[::-1]  # from the image down to the first map
        d: list[nn.Module] = [nn.Conv2d(c, ch[0], 1), nn.LeakyReLU(SLOPE)]
        for i in range(n - 1):
            d += [Down(ch[i], ch[i + 1])] + [Block(ch[i + 1], total) for _ in range(blocks)]
        d += [nn.LeakyReLU(SLOPE), nn.Flatten(), nn.Linear(ch[-1] * first * first, ch[-1]), nn.LeakyReLU(SLOPE),
              nn.Linear(ch[-1], 1)]
        G, D = nn.Sequential(*g), nn.Sequential(*d)
        _he(G)
        _he(D)
        nn.init.zeros_(to_image.weight)  # G starts flat grey, its tanh unsaturated
        return Generator(G, cfg.z_dim, img_shape), Discriminator(D, img_shape)
    return build
