"""Benchmark: one dgm training step against a hand-written PyTorch loop.

Both sides train the digits VAE of ``recipes/image/digits-vae.toml`` (built through dgm)
from the same initial weights, with the same seed, the same batches in the same order,
the same AdamW settings and the same gradient clipping. Only the loop differs:

* dgm: ``dgm.training.Trainer.fit()`` (accelerate, metrics logged every
  ``train.log_every`` steps, progress bar off, no checkpoint inside the timed steps);
* plain: ``DataLoader`` + ``loss, _ = model(batch)``, backward, clip, step, zero_grad.

Time per step is ``(t(2N) - t(N)) / N``: each side is run for N and for 2N steps from a
fresh start and the difference is taken, so the fixed costs of a run (first iterator,
the checkpoint ``fit()`` writes at its last step, the final log) cancel out. Runs of the
two sides are interleaved over several rounds; the medians are reported. Peak memory is
read from ``getrusage`` in one fresh child process per side.

Run by hand from the repository root::

    .venv/bin/python benchmarks/trainer_step.py            # full run, writes results/
    .venv/bin/python benchmarks/trainer_step.py --profile  # cProfile of both loops
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import datetime
import gc
import io
import json
import os
import platform
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "image" / "digits-vae.toml"
RESULTS = Path(__file__).resolve().parent / "results"
TARGET_RATIO = 1.05


@dataclasses.dataclass
class Setup:
    """What both sides share: the recipe, the training data and the initial weights."""

    recipe: Any
    data: Any
    initial: dict[str, torch.Tensor]
    seed: int

    def fresh_model(self) -> nn.Module:
        """A newly built family holding the shared initial weights."""
        from dgm.assembly import build_family
        from dgm.plugins import get_registry

        model = build_family(self.recipe, get_registry(), self.data.info)
        model.load_state_dict(self.initial)
        return model


def load_setup(threads: int) -> Setup:
    """Build the recipe's data and family once and keep a copy of the initial weights."""
    from dgm.assembly import build_data, build_family
    from dgm.plugins import get_registry
    from dgm.recipes import read_recipe, resolved

    torch.set_num_threads(threads)
    registry = get_registry()
    recipe = read_recipe(RECIPE)
    recipe.validate(registry)
    recipe = resolved(recipe)
    data = build_data(recipe, registry, "train")
    torch.manual_seed(recipe.run.seed)
    family = build_family(recipe, registry, data.info)
    initial = {k: v.detach().clone() for k, v in family.state_dict().items()}
    return Setup(recipe, data, initial, recipe.run.seed)


def run_dgm(setup: Setup, steps: int, workdir: Path) -> tuple[float, nn.Module]:
    """Train ``steps`` steps with dgm's Trainer; seconds spent in ``fit()`` and the model."""
    from dgm.runs import RunDir
    from dgm.training import Trainer

    config = dataclasses.replace(setup.recipe.train, steps=steps, progress=False,
                                 checkpoint_every=steps + 1)
    run = RunDir(Path(tempfile.mkdtemp(dir=workdir)))
    model = setup.fresh_model()
    trainer = Trainer(model, setup.data, run, config, setup.recipe.data_loading,
                      seed=setup.seed)
    gc.collect()
    start = time.perf_counter()
    result = trainer.fit()
    seconds = time.perf_counter() - start
    assert result.steps == steps
    return seconds, trainer.family


def run_plain(setup: Setup, steps: int) -> tuple[float, nn.Module]:
    """Train ``steps`` steps with a hand-written loop; seconds in the loop and the model."""
    config = setup.recipe.train
    model = setup.fresh_model()
    torch.manual_seed(setup.seed)
    # shuffle=True spelled out, so that each epoch's order can be seeded (seed + epoch,
    # as accelerate's seedable sampler does) without drawing from the global RNG stream
    order = torch.Generator()
    loader = DataLoader(setup.data, batch_size=setup.recipe.data_loading.batch_size,
                        sampler=RandomSampler(setup.data, generator=order), drop_last=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    gc.collect()
    start = time.perf_counter()
    model.train()
    step, epoch = 0, 0
    while step < steps:
        order.manual_seed(setup.seed + epoch)
        for batch in loader:
            loss, _ = model(batch)
            loss.backward()
            if config.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad()
            step += 1
            if step >= steps:
                break
        epoch += 1
    return time.perf_counter() - start, model


def max_weight_difference(a: nn.Module, b: nn.Module) -> float:
    """Largest absolute difference between two models' weights."""
    sb = b.state_dict()
    return max((v - sb[k]).abs().max().item() for k, v in a.state_dict().items())


def time_rounds(setup: Setup, steps: int, rounds: int, workdir: Path
                ) -> dict[str, list[float]]:
    """Seconds per step for each side and round, the sides interleaved (ABAB, then BABA)."""
    sides: dict[str, Callable[[int], float]] = {
        "dgm": lambda n: run_dgm(setup, n, workdir)[0],
        "plain": lambda n: run_plain(setup, n)[0],
    }
    per_step: dict[str, list[float]] = {name: [] for name in sides}
    for r in range(rounds):
        order = list(sides) if r % 2 == 0 else list(reversed(sides))
        short = {name: sides[name](steps) for name in order}
        long = {name: sides[name](2 * steps) for name in order}
        for name in sides:
            per_step[name].append((long[name] - short[name]) / steps)
        print(f"round {r + 1}/{rounds}: " + "  ".join(
            f"{n} {1e3 * per_step[n][-1]:.3f} ms/step" for n in sides), flush=True)
    return per_step


def child_memory(side: str, steps: int, threads: int) -> dict[str, float]:
    """Run one side in a fresh interpreter and return what it reports (peak RSS, MB)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--side", side,
           "--steps", str(steps), "--threads", str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def side_main(side: str, steps: int, threads: int) -> None:
    """Child process: build, train one side, print peak RSS as JSON."""
    if side == "dgm":
        import dgm.training  # noqa: F401  (import cost is part of the dgm side)
    setup = load_setup(threads)
    built = _rss_mb()
    with tempfile.TemporaryDirectory() as tmp:
        if side == "dgm":
            seconds = run_dgm(setup, steps, Path(tmp))[0]
        else:
            seconds = run_plain(setup, steps)[0]
    print(json.dumps({"side": side, "steps": steps, "seconds": seconds,
                      "rss_after_build_mb": built, "peak_rss_mb": _rss_mb()}))


def profile(setup: Setup, steps: int, workdir: Path, top: int = 30) -> None:
    """Print cProfile tables (own time) of both sides over ``steps`` steps."""
    for name, fn in (("dgm", lambda: run_dgm(setup, steps, workdir)),
                     ("plain", lambda: run_plain(setup, steps))):
        fn()  # warm
        prof = cProfile.Profile()
        prof.enable()
        fn()
        prof.disable()
        text = io.StringIO()
        stats = pstats.Stats(prof, stream=text)
        stats.sort_stats("tottime").print_stats(top)
        print(f"===== {name}: {steps} steps, sorted by own time =====")
        print(text.getvalue())


def machine() -> dict[str, Any]:
    """Where the benchmark ran."""
    import accelerate

    return {"platform": platform.platform(), "processor": platform.processor(),
            "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "accelerate": accelerate.__version__,
            "torch_threads": torch.get_num_threads(),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}


def write_results(report: dict[str, Any]) -> None:
    """Write ``results/trainer_step.json`` and a short markdown table beside it."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "trainer_step.json").write_text(json.dumps(report, indent=2) + "\n")
    f, m, s = report["figures"], report["machine"], report["settings"]
    lines = [
        "# trainer_step: dgm Trainer vs plain PyTorch loop (digits VAE)",
        "",
        f"{m['date']}, {m['platform']}, {m['cpu_count']} CPUs, torch {m['torch']}, "
        f"{m['torch_threads']} threads; batch {s['batch_size']}, "
        f"{s['steps']} vs {2 * s['steps']} steps x {s['rounds']} rounds.",
        "",
        "| loop | median ms/step | min ms/step | peak RSS MB |",
        "|---|---:|---:|---:|",
    ]
    for side in ("dgm", "plain"):
        d = f[side]
        lines.append(f"| {side} | {d['median_ms_per_step']:.3f} | {d['min_ms_per_step']:.3f} "
                     f"| {d['peak_rss_mb']:.0f} |")
    verdict = "within" if f["ratio"] <= TARGET_RATIO else "above"
    lines += ["", f"dgm/plain time ratio: **{f['ratio']:.3f}** ({verdict} the "
              f"{TARGET_RATIO} target; median of per-round ratios "
              f"{f['median_round_ratio']:.3f}). Weights after {s['steps']} steps differ by "
              f"at most {f['max_weight_difference']:.2g}.", ""]
    (RESULTS / "trainer_step.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    """Command line: full benchmark, ``--profile``, or one ``--side`` (child process)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="N; runs are N and 2N steps")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--side", choices=("dgm", "plain"), help="child mode: one side")
    parser.add_argument("--profile", action="store_true", help="cProfile both loops")
    parser.add_argument("--no-write", action="store_true", help="do not write results/")
    args = parser.parse_args(argv)
    if args.side:
        side_main(args.side, args.steps, args.threads)
        return

    memory = {side: child_memory(side, 2 * args.steps, args.threads)
              for side in ("dgm", "plain")}
    setup = load_setup(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if args.profile:
            profile(setup, args.steps, workdir)
            return
        _, dgm_model = run_dgm(setup, args.steps, workdir)  # warm-up and same-work check
        _, plain_model = run_plain(setup, args.steps)
        difference = max_weight_difference(dgm_model, plain_model)
        print(f"weights after {args.steps} steps: max |dgm - plain| = {difference:.3g}")
        per_step = time_rounds(setup, args.steps, args.rounds, workdir)

    figures: dict[str, Any] = {}
    for side, values in per_step.items():
        figures[side] = {"ms_per_step": [1e3 * v for v in values],
                         "median_ms_per_step": 1e3 * statistics.median(values),
                         "min_ms_per_step": 1e3 * min(values),
                         "peak_rss_mb": memory[side]["peak_rss_mb"],
                         "rss_after_build_mb": memory[side]["rss_after_build_mb"]}
    figures["ratio"] = (figures["dgm"]["median_ms_per_step"]
                        / figures["plain"]["median_ms_per_step"])
    figures["median_round_ratio"] = statistics.median(
        d / p for d, p in zip(per_step["dgm"], per_step["plain"]))
    figures["target_ratio"] = TARGET_RATIO
    figures["max_weight_difference"] = difference
    train = setup.recipe.train
    report = {
        "benchmark": "trainer_step",
        "machine": machine(),
        "settings": {
            "recipe": str(RECIPE.relative_to(ROOT)), "data": "image:digits (train split)",
            "batch_size": setup.recipe.data_loading.batch_size, "optimizer": "AdamW",
            "lr": train.lr, "weight_decay": train.weight_decay,
            "max_grad_norm": train.max_grad_norm, "log_every": train.log_every,
            "seed": setup.seed, "steps": args.steps, "rounds": args.rounds,
            "memory_child_steps": 2 * args.steps,
        },
        "method": (
            "Per round, each side trains from the same initial weights for N and then 2N "
            "steps (order ABAB, reversed every other round); ms/step = (t(2N) - t(N)) / N, "
            "which cancels per-run fixed costs such as the final checkpoint fit() writes. "
            "dgm time is Trainer.fit() (Trainer construction excluded); plain time is the "
            "loop (DataLoader/optimizer construction excluded). Medians over rounds. Peak "
            "RSS is ru_maxrss of a fresh child process per side training 2N steps."
        ),
        "figures": figures,
    }
    print(json.dumps(figures, indent=2))
    if not args.no_write:
        write_results(report)
        print(f"wrote {RESULTS / 'trainer_step.json'} and {RESULTS / 'trainer_step.md'}")


if __name__ == "__main__":
    main()
