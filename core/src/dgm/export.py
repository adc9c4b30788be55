"""``dgm export``: a trained diffusion run as a diffusers ``DDPMPipeline`` folder that
``DDPMPipeline.from_pretrained(folder)`` loads offline, with no dgm installed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from dgm.errors import ExportError
from dgm.families.diffusion import Diffusion
from dgm.loaded_run import LoadedRun
from dgm.runs import RunDir

EXPORT_INFO = "dgm_export.json"


def export_diffusers(run: RunDir, out: Path, echo=print) -> Path:
    """Write ``out`` (which must not exist yet) as a DDPMPipeline: the run's UNet and its
    DDPM noise schedule, in safetensors. What the pipeline cannot express is refused
    (class conditioning, circular padding) or stated in ``dgm_export.json``."""
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ExportError(f"{str(out)!r} exists and is not empty; nothing was written. "
                          "Choose a new folder")
    loaded = LoadedRun.open(run)
    family, recipe = loaded.family, loaded.recipe
    where = f"run {str(run.path)!r}"
    if not isinstance(family, Diffusion):
        raise ExportError(f"{where} trained a {type(family).__name__}; only diffusion runs "
                          "export to a diffusers DDPMPipeline")
    unet = getattr(family.denoiser, "unet", None)
    if not isinstance(unet, UNet2DModel):
        raise ExportError(f"{where}: its denoiser {type(family.denoiser).__name__} is not a "
                          "diffusers UNet2DModel (core:unet2d); DDPMPipeline needs one")
    if family.conditional:
        raise ExportError(f"{where} is class-conditional; DDPMPipeline has no class input")
    if getattr(family.denoiser, "padding_mode", "zeros") != "zeros":
        raise ExportError(f"{where} uses {family.denoiser.padding_mode} padding, which "
                          "UNet2DModel's config cannot record; the exported model would "
                          "differ from the trained one")
    scheduler = DDPMScheduler.from_config(family.scheduler.config,
                                          clip_sample=family.discrete)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    DDPMPipeline(unet=unet.to("cpu"), scheduler=scheduler).save_pretrained(partial)
    info = {"run": str(run.path.resolve()), "recipe": recipe.run.name,
            "data": {"shape": list(family.info.shape), "levels": family.info.levels,
                     "value_range": list(family.info.value_range)},
            "differences": ["DDPMPipeline samples with plain DDPM and maps [-1, 1] to "
                            "[0, 1]; dgm's snap_to_grid and its samplers are not part of "
                            "the pipeline"]}
    (partial / EXPORT_INFO).write_text(json.dumps(info, indent=2))
    if out.exists():
        out.rmdir()
    partial.rename(out)
    echo(f"exported {where} to {out} (load with diffusers.DDPMPipeline.from_pretrained)")
    return out
