"""Networks for normalizing flows on images."""

from __future__ import annotations

from torch import Tensor, nn


class CouplingNet(nn.Module):
    """The shift and log-scale network of an affine coupling: 3x3 conv, ReLU, 1x1 conv,
    ReLU, and a zero-initialised 3x3 conv, so a new coupling is the identity map."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int = 64) -> None:
        super().__init__()
        if hidden < 1:
            raise ValueError(f"hidden must be at least 1, got {hidden}")
        last = nn.Conv2d(hidden, out_channels, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 1), nn.ReLU(), last)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
