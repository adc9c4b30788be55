"""Texture synthesis from one photograph: each texture recipe (diffusion, spatial GAN)
trained on brick, grass and gravel within a stated budget on this machine, then scored
against the held-out quarter of the same photograph.

Figures per exemplar and family:
- patch SWD: multi-scale patch sliced Wasserstein distance of generated texture to the
  exemplar's training region, next to the floor: the held-out region against the
  training region (the photograph against itself). Samples cover the held-out region's
  pixel count; the ratio model / floor is the target (at most 1.5).
- seam score of the 512x512 sample tiled 2x2 (1: no seam), next to the same score of the
  held-out photograph region tiled (a visible seam).
- copy score: share of 16x16 generated patches within 0.01 RMS of an exemplar window,
  next to the same share for held-out photograph patches.
- seconds to generate one 512x512 texture (diffusion: DPM-Solver++ at the recipe's
  sampling_steps, or --sampling-steps for runs trained before a change of it).

Run: ``.venv/bin/python benchmarks/texture_synthesis.py`` (about 65 minutes on 2 cores);
``--reuse`` re-scores finished runs. Writes benchmarks/results/texture_synthesis.{json,md}
and docs/images/texture-<exemplar>.jpg (exemplar, diffusion and GAN samples tiled 2x2).

A variant: ``--families GAN --set networks.generator.noise_injection=true --name
texture_gan_noise_injection --runs runs/bench-texture-ni`` adds recipe overrides and
writes results/NAME.{json,md} and no preview images.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from benchmark_support import machine, timed_dgm_run
from PIL import Image

from dgm.cpu_allocator import keep_freed_memory
from dgm.loaded_run import LoadedRun
from dgm.metrics import patch_swd_distance
from dgm.runs import RunDir
from dgm_image.codec import to_pil
from dgm_texture.exemplars import load_exemplars, split_region
from dgm_texture.metrics import copy_score, seam_energies, seam_score
from dgm_texture.previews import tile

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
IMAGES = ROOT / "docs" / "images"
EXEMPLARS = ("brick", "grass", "gravel")
RECIPES = {"diffusion": ("recipes/texture/brick-diffusion.toml", 1200),
           "GAN": ("recipes/texture/brick-gan.toml", 5000)}
HOLDOUT = 0.25
SWD = {"levels": 4, "patch_size": 7, "n_projections": 256, "max_patches": 16384}


def swd(x: torch.Tensor, y: torch.Tensor) -> float:
    """Patch SWD averaged over three seeds (its own sampling noise is then small)."""
    return sum(patch_swd_distance(x, y, seed=s, **SWD) for s in range(3)) / 3


def seam_spread(x: torch.Tensor, period: int = 16) -> float:
    """The standard deviation of the interior borders' energies (same phase as the seam,
    each relative to their mean): how far from 1 one border falls by chance. Textures
    with long straight edges (mortar lines) have a wide spread."""
    interior, _ = seam_energies(x, period)
    columns = (x.shape[-1] - 1) // period
    return float((interior[:columns].std() + interior[columns:].std()) / 2)


def score(run: Path, image: torch.Tensor, **options: int) -> tuple[dict, torch.Tensor]:
    """Figures of one run; ``options`` go to every ``family.sample`` call."""
    family = LoadedRun.open(RunDir.open(run)).family
    train_region = split_region(image, "train", HOLDOUT)[None]
    held = split_region(image, "test", HOLDOUT)[None]
    generator = torch.Generator().manual_seed(0)
    family.sample(1, generator, size=(64, 64), **options)  # warm-up: imports, allocator
    start = time.perf_counter()
    big = family.sample(1, generator, size=(512, 512), **options)
    seconds_512 = time.perf_counter() - start
    side = 256  # two 256x256 samples cover the held-out region's 128x512 pixels
    samples = family.sample(2, generator, size=(side, side), **options)
    return {
        "sampling_steps": options.get("steps", getattr(family, "sampling_steps", None)),
        "seconds_512": seconds_512,
        "patch_swd": swd(samples, train_region),
        "patch_swd_floor": swd(held, train_region),
        "seam_score_512": seam_score(big, period=16),
        "seam_spread_512": seam_spread(big),
        "seam_score_photo": seam_score(held, period=16),
        "copy_score": copy_score(samples, train_region),
        "copy_score_photo": copy_score(held, train_region),
    }, big[0]


def panel(image: torch.Tensor, samples: dict[str, torch.Tensor], path: Path) -> None:
    """Exemplar (512x512) then each family's 256x256 corner of its 512x512 sample, tiled
    2x2 at full resolution: a seam would cross the middle of the tile."""
    tiles = [to_pil(image)] + [to_pil(tile(s[:, :256, :256])) for s in samples.values()]
    out = Image.new(tiles[0].mode, (512 * len(tiles) + 8 * (len(tiles) - 1), 512), 255)
    for i, im in enumerate(tiles):
        out.paste(im, (i * 520, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(path, quality=92)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reuse", action="store_true", help="re-score finished runs")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench-texture")
    parser.add_argument("--exemplars", nargs="*", default=list(EXEMPLARS))
    parser.add_argument("--families", nargs="*", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="recipe overrides for every run")
    parser.add_argument("--name", default="texture_synthesis", help="results file name")
    parser.add_argument("--sampling-steps", type=int, default=None,
                        help="diffusion sampling steps when scoring (default: the run's)")
    args = parser.parse_args()
    keep_freed_memory()
    rows, settings = [], {}
    for name in args.exemplars:
        (image,), _ = load_exemplars([name])
        big_samples = {}
        for family in args.families:
            recipe, steps = RECIPES[family]
            run = args.runs / f"{name}-{family.lower()}"
            overrides = [f"data.image={name}", f"run.name={name}-{family.lower()}",
                         f"train.steps={steps}", *args.set]
            settings[family] = {"recipe": recipe, "overrides": overrides[2:]}
            timings = timed_dgm_run(recipe, run, overrides, reuse=args.reuse, cwd=ROOT)
            options = ({"steps": args.sampling_steps}
                       if family == "diffusion" and args.sampling_steps else {})
            if options:
                settings[family]["sampling_steps_at_scoring"] = args.sampling_steps
            figures, big_samples[family] = score(run, image, **options)
            row = {"exemplar": name, "family": family, "steps": timings["steps"],
                   "train_seconds": timings["train_seconds"], **figures}
            row["swd_ratio"] = row["patch_swd"] / row["patch_swd_floor"]
            rows.append(row)
            print(json.dumps(row), flush=True)
        if args.name == "texture_synthesis":
            panel(image, big_samples, IMAGES / f"texture-{name}.jpg")
    result = {"benchmark": "texture_synthesis", "machine": machine(),
              "settings": {"recipes": settings, "holdout": HOLDOUT, "swd": SWD,
                           "crop": 64, "samples_for_swd": "2 x 256x256",
                           "copy": "16x16 patches, RMS <= 0.01, stride-1 windows with flips"},
              "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2))
    (RESULTS / f"{args.name}.md").write_text(table(result))
    print(table(result))


def table(result: dict) -> str:
    m = result["machine"]
    lines = [f"Texture synthesis from one photograph ({m['date'][:10]}, {m['cpu_count']} CPU "
             f"cores, torch {m['torch']}, {m['torch_threads']} threads). Patch SWD to the "
             "exemplar's training region, next to the floor (held-out region vs training "
             "region); seam score of a 512x512 sample tiled (1 = no seam) next to the "
             "held-out photo region tiled, with the spread of interior borders of the same phase "
             "(a seam within about two spreads of 1 is within noise); copy score next to "
             "held-out photo patches. Diffusion samples with DPM-Solver++ at "
             f"{_diffusion_steps(result)} steps.", "",
             "| exemplar | family | steps | training (s) | patch SWD (floor) | ratio | "
             "seam score ± interior spread (photo) | copy score (photo) | 512x512 (s) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(
            f"| {r['exemplar']} | {r['family']} | {r['steps']} | {r['train_seconds']:.0f} | "
            f"{r['patch_swd']:.3f} ({r['patch_swd_floor']:.3f}) | {r['swd_ratio']:.2f} | "
            f"{r['seam_score_512']:.2f} ± {r.get('seam_spread_512', float('nan')):.2f} "
            f"({r['seam_score_photo']:.1f}) | "
            f"{r['copy_score']:.3f} ({r['copy_score_photo']:.3f}) | {r['seconds_512']:.1f} |")
    return "\n".join(lines) + "\n"


def _diffusion_steps(result: dict) -> str:
    steps = sorted({r.get("sampling_steps") for r in result["rows"]
                    if r["family"] == "diffusion"} - {None})
    return "/".join(str(n) for n in steps) or "the recipe's"


if __name__ == "__main__":
    main()
