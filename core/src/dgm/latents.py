"""Composition through the contract: a trained autoencoder's latents as a data set and a
modality, so any family (diffusion, flow) can learn a prior over them from a recipe
(latent diffusion) with no new family code. Samples decode back through the
autoencoder and are written by the autoencoder's own modality."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dgm.capabilities import ENCODES, has
from dgm.contract import DataInfo, Family, Modality, Representation, TensorData, as_batch
from dgm.errors import DataError

MODALITY = "core:latent"


_OPENING: list[str] = []
"""Run folders whose autoencoder is being loaded, outermost first: a run whose data are
the latents of a run whose data are its own latents would otherwise recurse forever."""


def _load_autoencoder(run_path: str) -> tuple[Family, Modality, Any]:
    """The trained family of ``run_path`` and its data modality; it must encode and
    decode."""
    from dgm.errors import RunDirError
    from dgm.loaded_run import LoadedRun

    key = str(Path(run_path).resolve())
    if key in _OPENING:
        chain = " -> ".join([*_OPENING, key])
        raise DataError(f"data.run = {run_path!r}: the runs' data loops back on itself "
                        f"({chain}): an autoencoder cannot be trained on its own latents. "
                        "Point data.run at a run trained on the data itself")
    _OPENING.append(key)
    try:
        loaded = LoadedRun.open(run_path)
        family, modality, recipe = loaded.family, loaded.modality, loaded.recipe
    except RunDirError as exc:
        raise DataError(f"data.run = {run_path!r}: no trained autoencoder there ({exc}). "
                        "Train one first, e.g. `dgm run recipes/image/digits-vae.toml`") from None
    finally:
        _OPENING.remove(key)
    if not has(family, ENCODES):
        raise DataError(f"data.run = {run_path!r}: its family {type(family).__name__} has no "
                        "amortised posterior (capability 'encodes'), so it has no latents "
                        "to model")
    return family, modality, recipe


class Latents(TensorData):
    """The posterior means of an autoencoder's data, one split."""

    @property
    def latents(self) -> Tensor:
        return self.x


@torch.no_grad()
def latents(split: str, run: str, batch_size: int = 256) -> Latents:
    """Registered as ``core:latents``: encode ``split`` of the data the autoencoder in run
    folder ``run`` was trained on, with that run's recipe, into its posterior means."""
    from dgm.assembly import build_data
    from dgm.plugins import get_registry

    family, _, recipe = _load_autoencoder(run)
    data = build_data(recipe, get_registry(), split)
    device = next(family.parameters()).device
    means, conditions = [], []
    for start in range(0, len(data), batch_size):
        items = [data[i] for i in range(start, min(start + batch_size, len(data)))]
        items = [as_batch(item) for item in items]
        x = torch.stack([item["x"] for item in items]).to(device)
        c = torch.stack([item["c"] for item in items]) if "c" in items[0] else None
        e = family.encoded_condition(None if c is None else c.to(device), x.shape[0])
        means.append(family.encode(x, e)[0].flatten(1).cpu())
        if c is not None:
            conditions.append(c)
    z = torch.cat(means)
    info = DataInfo(MODALITY, tuple(z.shape[1:]), condition=data.info.condition,
                    value_range=(float(z.min()), float(z.max())),
                    source={"run": str(Path(run).resolve()), "data": data.info.modality})
    return Latents(z, torch.cat(conditions) if conditions else None, info)


def latent_modality(info: DataInfo) -> Modality:
    """Registered as ``core:latent``: vectors whose stated inverse is the autoencoder's
    decoder; files and previews are those of the autoencoder's own modality."""
    if "run" not in info.source:
        raise DataError("core:latent data must name the run of its autoencoder "
                        "(DataInfo.source['run']); build it with the core:latents data set")
    family, base, _ = _load_autoencoder(info.source["run"])

    @torch.no_grad()
    def decode(z: Tensor) -> Tensor:
        device = next(family.parameters()).device
        decoded = family.decode(z.reshape(-1, *info.shape).to(device)).cpu()
        return decoded[0] if z.dim() == len(info.shape) else decoded

    def preview(z: Tensor, path: Path) -> None:
        base.preview(decode(z), path)

    return Modality(
        name=MODALITY,
        read=lambda path: torch.load(path, weights_only=True),
        write=base.write,
        preview=preview,
        file_suffix=base.file_suffix,
        representation=Representation("autoencoder-latent", forward=lambda x: x,
                                      inverse=decode,
                                      metadata={"run": info.source["run"]}),
        networks={"denoiser": "core:mlp-denoiser"},
        likelihood="core:gaussian",
        metrics=["core:mmd"],
    )
