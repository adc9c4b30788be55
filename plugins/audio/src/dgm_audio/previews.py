"""What a person looks at and listens to: a grid of numbered spectrograms, one small
spectrogram PNG per sample, and an HTML page pairing each with its WAV file."""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

PAGE = "index.html"


def _to_rgb(spectrogram: Tensor) -> np.ndarray:
    """A (n_mels, frames) log spectrogram as an RGB image, low frequencies at the bottom,
    scaled to its own 5th..99.5th percentile range."""
    from matplotlib import colormaps

    values = spectrogram.detach().float().cpu().numpy()[::-1]
    low, high = np.percentile(values, [5, 99.5])
    scaled = np.clip((values - low) / max(high - low, 1e-6), 0, 1)
    return (colormaps["magma"](scaled)[..., :3] * 255).astype(np.uint8)


def write_spectrogram_grid(spectrograms: Tensor, path: Path, titles: list[str]) -> None:
    """Tile ``(N, n_mels, frames)`` log spectrograms into one numbered PNG grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = spectrograms.shape[0]
    columns = min(8, n)
    rows = math.ceil(n / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.3 * rows), dpi=90,
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(_to_rgb(spectrograms[i]), aspect="auto")
            ax.set_title(titles[i], fontsize=7)
    fig.tight_layout(pad=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def write_page(folder: Path, spectrograms: Tensor, suffix: str = ".wav",
               title: str = "dgm audio samples") -> Path:
    """``index.html`` in ``folder``: each sample's spectrogram next to a player for its
    sound file (``sample-0000.wav``, ... as ``dgm sample`` writes them)."""
    from PIL import Image

    rows = []
    for i, spec in enumerate(spectrograms):
        picture = folder / f"spectrogram-{i:04d}.png"
        image = Image.fromarray(_to_rgb(spec))
        image.resize((image.width * 3, image.height * 3), Image.NEAREST).save(picture)
        sound = f"sample-{i:04d}{suffix}"
        player = (f'<audio controls src="{sound}"></audio>' if (folder / sound).exists()
                  else "(no sound file)")
        rows.append(f"<tr><td>{i}</td><td><img src=\"{picture.name}\"></td>"
                    f"<td>{player}<br><a href=\"{sound}\">{sound}</a></td></tr>")
    page = folder / PAGE
    page.write_text(
        f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<h1>{html.escape(title)}</h1><p>Spectrograms (log-mel, low frequencies at the "
        "bottom) and the WAV files they belong to; the grid is "
        "<a href=\"grid.png\">grid.png</a>.</p>"
        "<table><tr><th>#</th><th>spectrogram</th><th>sound</th></tr>"
        + "\n".join(rows) + "</table>\n")
    return page


def make_preview(to_spectrogram: Callable[[Tensor], Tensor], suffix: str
                 ) -> Callable[[Tensor, Path], None]:
    """The modality's preview: ``to_spectrogram`` maps a batch in the data representation
    to log spectrograms ``(N, n_mels, frames)``; writes the grid and the page."""

    def preview(samples: Tensor, path: Path) -> None:
        path = Path(path)
        with torch.no_grad():
            spectrograms = to_spectrogram(samples)
        write_spectrogram_grid(spectrograms, path,
                               [f"#{i}" for i in range(spectrograms.shape[0])])
        write_page(path.parent, spectrograms, suffix)

    return preview
