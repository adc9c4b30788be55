"""Benchmark: one dgm training step against a hand-written PyTorch loop.

Both sides train the digits VAE of ``recipes/image/digits-vae.toml`` (built through dgm)
from the same initial weights, with the same seed, the same batches in the same order,
the same AdamW settings and the same gradient clipping; after N steps their weights are
bit-identical. Only the loop differs:

* dgm: ``dgm.training.Trainer.fit()`` (accelerate; metrics logged every
  ``train.log_every`` steps, progress bar off, no checkpoint inside the timed steps);
* plain: ``DataLoader`` + ``loss, _ = model(batch)``, backward, clip, step, zero_grad.

Time per step is read inside each run, without touching the trainer: dgm writes a
wall-clock ``time`` into ``metrics.jsonl`` at every logged step, and the plain loop
notes the time at the same steps. The window runs from the first logged step (the
warm-up before it is excluded) to the last step, so it holds whole log cycles and none
of the checkpoint ``fit()`` writes after its last step. The two sides alternate
(ABAB, BABA) over several rounds; the medians are reported. Peak memory is read with
``getrusage`` in one fresh child process per side.

Run by hand from the repository root (about 1.5 minutes on 2 cores)::

    .venv/bin/python benchmarks/trainer_step.py              # writes results/
    .venv/bin/python benchmarks/trainer_step.py --profile    # cProfile of both loops
    .venv/bin/python benchmarks/trainer_step.py --breakdown  # cost of dgm's extra work
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import gc
import inspect
import io
import json
import math
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_support import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "image" / "digits-vae.toml"
RESULTS = Path(__file__).resolve().parent / "results"
TARGET_RATIO = 1.05
QUIET = 0.1
"""Rounds during which other processes used more CPU than this (cores) are run again."""

METHOD = (
    "Each round runs both sides for N steps from the same initial weights, interleaved "
    "(ABAB, BABA in odd rounds). ms/step is taken inside each run over the steps from the "
    "first logged step (log_every, warm-up excluded) to step N: for dgm from the wall-clock "
    "'time' that Trainer.fit() writes into metrics.jsonl at those steps (so the window "
    "holds whole log cycles and excludes the checkpoint fit() writes after its last "
    "step), for the plain loop from time.time() noted after the same steps. Rounds "
    "during which other processes used more than 0.1 CPU cores are run again. Medians "
    "over rounds; ratio = median over rounds of dgm / plain (the two runs of a round are "
    "back to back, so slow drifts of the machine cancel). Both sides end with bit-identical "
    "weights (same batches, noise and updates). Peak RSS is ru_maxrss of a fresh child "
    "process per side that builds the model and trains N steps."
)


@dataclasses.dataclass
class Setup:
    """What both sides share: the recipe, the training data and the initial weights."""

    recipe: Any
    data: Any
    initial: dict[str, torch.Tensor]
    seed: int

    @property
    def warmup(self) -> int:
        """Steps before the timed window: up to dgm's first logged step."""
        return self.recipe.train.log_every

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


def make_trainer(setup: Setup, steps: int, workdir: Path) -> Any:
    """A dgm Trainer for ``steps`` steps in a new run folder, checkpoints only at the end."""
    from dgm.runs import RunDir
    from dgm.training import Trainer

    config = dataclasses.replace(setup.recipe.train, steps=steps, progress=False,
                                 checkpoint_every=steps + 1)
    run = RunDir(Path(tempfile.mkdtemp(dir=workdir)))
    return Trainer(setup.fresh_model(), setup.data, run, config, setup.recipe.data_loading,
                   seed=setup.seed)


def run_dgm(setup: Setup, steps: int, workdir: Path) -> tuple[float, nn.Module]:
    """Train with dgm's Trainer; seconds per step in the timed window, and the model."""
    trainer = make_trainer(setup, steps, workdir)
    gc.collect()
    result = trainer.fit()
    assert result.steps == steps
    times = {r["step"]: r["time"] for r in trainer.run.read_metrics() if "time" in r}
    return (times[steps] - times[setup.warmup]) / (steps - setup.warmup), trainer.family


def run_plain(setup: Setup, steps: int) -> tuple[float, nn.Module]:
    """Train with a hand-written loop; seconds per step in the timed window, and the model."""
    config = setup.recipe.train
    model = setup.fresh_model()
    torch.manual_seed(setup.seed)
    # shuffle=True spelled out: each epoch's order is seeded with seed + epoch (as dgm's
    # seedable sampler does), and neither the order nor the loader's own generator draws
    # on the global RNG stream, which the VAE's noise uses
    order = torch.Generator()
    loader = DataLoader(setup.data, batch_size=setup.recipe.data_loading.batch_size,
                        sampler=RandomSampler(setup.data, generator=order), drop_last=True,
                        generator=torch.Generator().manual_seed(setup.seed))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    gc.collect()
    model.train()
    step, epoch, start = 0, 0, math.nan
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
            if step == setup.warmup:
                start = time.time()  # the clock dgm's metrics use
            if step >= steps:
                break
        epoch += 1
    return (time.time() - start) / (steps - setup.warmup), model


def max_weight_difference(a: nn.Module, b: nn.Module) -> float:
    """Largest absolute difference between two models' weights."""
    sb = b.state_dict()
    return max((v - sb[k]).abs().max().item() for k, v in a.state_dict().items())


def _busy_seconds() -> tuple[float, float] | None:
    """CPU seconds used since boot by all processes, and by this one and its children."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields)
    total = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    t = os.times()
    return total, t.user + t.system + t.children_user + t.children_system


class ForeignLoad:
    """The CPU other processes used (in cores) between ``start()`` and ``stop()``."""

    def start(self) -> ForeignLoad:
        self.wall, self.busy = time.perf_counter(), _busy_seconds()
        return self

    def stop(self) -> float:
        after = _busy_seconds()
        if self.busy is None or after is None:
            return math.nan
        other = (after[0] - self.busy[0]) - (after[1] - self.busy[1])
        return max(other, 0.0) / (time.perf_counter() - self.wall)


def wait_for_quiet(limit_s: float) -> float:
    """Wait (at most ``limit_s``) until other processes use under ``QUIET`` cores."""
    deadline = time.monotonic() + limit_s
    while True:
        probe = ForeignLoad().start()
        time.sleep(2.0)
        load = probe.stop()
        if not load >= QUIET or time.monotonic() > deadline:
            return load
        print(f"other processes use {load:.2f} cores; waiting for a quiet machine",
              flush=True)


@dataclasses.dataclass
class Rounds:
    """Seconds per step of each side in each kept round, and what was discarded."""

    per_step: dict[str, list[float]]
    loads: list[float]
    discarded: int


def time_rounds(setup: Setup, steps: int, rounds: int, workdir: Path) -> Rounds:
    """Interleave the sides over ``rounds`` quiet rounds (at most twice as many tries)."""
    sides: dict[str, Callable[[], float]] = {
        "dgm": lambda: run_dgm(setup, steps, workdir)[0],
        "plain": lambda: run_plain(setup, steps)[0],
    }
    out = Rounds({name: [] for name in sides}, [], 0)
    for attempt in range(2 * rounds):
        if len(out.loads) == rounds:
            break
        order = list(sides) if attempt % 2 == 0 else list(reversed(sides))
        probe = ForeignLoad().start()
        result = {name: sides[name]() for name in order}
        load = probe.stop()
        line = "  ".join(f"{n} {1e3 * result[n]:.3f} ms/step" for n in sides)
        if load > QUIET:
            out.discarded += 1
            print(f"discarded: {line}  (other processes: {load:.2f} cores)", flush=True)
            continue
        for name in sides:
            out.per_step[name].append(result[name])
        out.loads.append(load)
        print(f"round {len(out.loads)}/{rounds}: {line}  (ratio "
              f"{result['dgm'] / result['plain']:.3f})", flush=True)
    return out


def child_memory(side: str, steps: int, threads: int) -> dict[str, float]:
    """Run one side in a fresh interpreter and return what it reports (RSS in MB)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--side", side,
           "--steps", str(steps), "--threads", str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def side_main(side: str, steps: int, threads: int) -> None:
    """Child process: build, train one side, print peak RSS as JSON."""
    if side == "dgm":
        import dgm.training  # noqa: F401  (importing the trainer is part of its cost)
    setup = load_setup(threads)
    built = _peak_rss_mb()
    with tempfile.TemporaryDirectory() as tmp:
        if side == "dgm":
            seconds = run_dgm(setup, steps, Path(tmp))[0]
        else:
            seconds = run_plain(setup, steps)[0]
    print(json.dumps({"side": side, "steps": steps, "ms_per_step": 1e3 * seconds,
                      "rss_after_build_mb": built, "peak_rss_mb": _peak_rss_mb()}))


def profile(setup: Setup, steps: int, workdir: Path, top: int = 25) -> None:
    """Print cProfile tables (own time) of both sides training ``steps`` steps."""
    for name, fn in (("dgm", lambda: run_dgm(setup, steps, workdir)),
                     ("plain", lambda: run_plain(setup, steps))):
        fn()  # warm
        prof = cProfile.Profile()
        prof.enable()
        fn()
        prof.disable()
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(top)
        print(f"===== {name}: {steps} steps, sorted by own time =====\n{text.getvalue()}")


def breakdown(setup: Setup, workdir: Path) -> dict[str, float]:
    """Microseconds per step of the work a dgm step does beyond the plain loop (best of
    several repeats, each piece alone). Uses accelerate internals; diagnostic only."""
    from accelerate.utils import is_lomo_available, send_to_device
    from tqdm.auto import tqdm

    trainer = make_trainer(setup, 2 * setup.warmup, workdir)
    acc, model, optimizer = trainer.accelerator, trainer.model, trainer.optimizer
    batch = next(iter(trainer.loader))
    loss, logs = model(batch)
    loss_sum = torch.zeros(())

    def contexts() -> None:
        with acc.accumulate(model), acc.autocast():
            pass

    def sums() -> None:
        nonlocal loss_sum
        loss_sum += loss.detach()
        acc_logs: dict[str, Any] = {}
        for key, value in logs.items():
            acc_logs[key] = acc_logs.get(key, 0.0) + value.detach().float()

    bar = tqdm(disable=True)
    params = list(model.parameters())
    acc.backward(loss)
    max_norm = setup.recipe.train.max_grad_norm or 1.0

    def clip_accelerate() -> None:
        acc.clip_grad_norm_(params, max_norm)

    def clip_torch() -> None:
        torch.nn.utils.clip_grad_norm_(params, max_norm)

    def log() -> None:
        trainer._log(loss_sum, {k: v.detach() for k, v in logs.items()}, 1, 0.0, bar)

    cases: dict[str, tuple[Callable[[], object], float]] = {
        "accelerate AcceleratedOptimizer.step: is_lomo_available() twice":
            (is_lomo_available, 0.5),
        "accelerate AcceleratedOptimizer.zero_grad: inspect.signature":
            (lambda: inspect.signature(optimizer.optimizer.zero_grad), 1.0),
        "accelerate accumulate() + autocast() contexts": (contexts, 1.0),
        "accelerate DataLoaderShard: send_to_device(batch)":
            (lambda: send_to_device(batch, acc.device), 1.0),
        "accelerate backward: loss / grad_accum": (lambda: loss / 1, 1.0),
        "dgm: isfinite(loss) check": (lambda: bool(torch.isfinite(loss)), 1.0),
        "dgm: loss and log sums for metrics": (sums, 1.0),
        f"dgm: metrics record every {setup.warmup} steps (per step)":
            (log, setup.warmup),
    }
    def best_us(fn: Callable[[], object], number: int) -> float:
        return 1e6 * min(timeit.repeat(fn, number=number, repeat=7)) / number

    out = {}
    for name, (fn, per) in cases.items():
        out[name] = best_us(fn, 2000 if per == 1 else 200) / per
    clips: dict[str, list[float]] = {"accelerate": [], "torch": []}
    for _ in range(3):  # alternated, as the difference is small against the clip itself
        clips["accelerate"].append(best_us(clip_accelerate, 1000))
        clips["torch"].append(best_us(clip_torch, 1000))
    out["accelerate clip_grad_norm_ wrapper, beyond torch's clip"] = (
        min(clips["accelerate"]) - min(clips["torch"]))
    for name, us in out.items():
        print(f"{us:8.1f} us/step  {name}")
    print(f"{sum(out.values()):8.1f} us/step  total extra work in a dgm step")
    return out


def write_results(report: dict[str, Any]) -> None:
    """Write ``results/trainer_step.json`` and a short markdown table beside it."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "trainer_step.json"
    if path.is_file() and "previous" not in report:  # keep the last run's figures
        last = json.loads(path.read_text())
        report["previous"] = [{"date": last["machine"]["date"],
                               "ratio": last["figures"]["ratio"],
                               "dgm_median_ms_per_step":
                                   last["figures"]["dgm"]["median_ms_per_step"],
                               "plain_median_ms_per_step":
                                   last["figures"]["plain"]["median_ms_per_step"]},
                              *last.get("previous", [])]
    path.write_text(json.dumps(report, indent=2) + "\n")
    f, m, s = report["figures"], report["machine"], report["settings"]
    lines = [
        "# trainer_step: dgm Trainer vs a plain PyTorch loop (digits VAE)",
        "",
        f"{m['date']}; {m['platform']}; {m['cpu_count']} CPUs, {m['torch_threads']} torch "
        f"threads; torch {m['torch']}, accelerate {m['accelerate']}. Batch "
        f"{s['batch_size']}, {s['steps']} steps per run ({s['timed_steps']} timed), "
        f"{s['rounds']} rounds.",
        "",
        "| loop | median ms/step | min | max | peak RSS MB |",
        "|---|---:|---:|---:|---:|",
    ]
    for side in ("dgm", "plain"):
        d = f[side]
        lines.append(f"| {side} | {d['median_ms_per_step']:.3f} | {d['min_ms_per_step']:.3f} "
                     f"| {d['max_ms_per_step']:.3f} | {d['peak_rss_mb']:.0f} |")
    verdict = "within" if f["ratio"] <= TARGET_RATIO else "above"
    lines += [
        "",
        f"dgm/plain: **{f['ratio']:.3f}** ({verdict} the {TARGET_RATIO} target): the median "
        f"of the {len(f['round_ratios'])} per-round ratios (quartiles "
        f"{', '.join(f'{q:.3f}' for q in f['round_ratio_quartiles'])}). The ratio of the two "
        f"medians in the table is {f['ratio_of_medians']:.3f}. The extra work timed piece by "
        f"piece below adds up to {100 * f['extra_work_fraction']:.1f}% of a plain step. "
        "Weights "
        f"after {s['steps']} steps differ by at most {f['max_weight_difference']:.2g}.",
        "",
        *(["Earlier runs (each ratio measured side by side within its own run): " + "; ".join(
            f"{p['date'][:10]}: {p['ratio']:.3f} (dgm {p['dgm_median_ms_per_step']:.3f}, "
            f"plain {p['plain_median_ms_per_step']:.3f} ms/step)"
            for p in report.get("previous", [])) + ".", ""] if report.get("previous") else []),
        f"Method: {report['method']}",
        "",
        "Extra work in a dgm step, each piece timed alone (`--breakdown`):",
        "",
        "| us/step | piece |",
        "|---:|---|",
        *(f"| {us:.1f} | {name} |" for name, us in report["extra_work_us_per_step"].items()),
        f"| {sum(report['extra_work_us_per_step'].values()):.1f} | total |",
        "",
    ]
    (RESULTS / "trainer_step.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    """Command line: the benchmark, ``--profile``, ``--breakdown``, or one ``--side``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=100,
                        help="steps per run, a multiple of the recipe's log_every")
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--side", choices=("dgm", "plain"), help="child mode: one side")
    parser.add_argument("--profile", action="store_true", help="cProfile both loops")
    parser.add_argument("--breakdown", action="store_true",
                        help="time the pieces of dgm's extra per-step work")
    parser.add_argument("--no-write", action="store_true", help="do not write results/")
    parser.add_argument("--wait", type=float, default=120.0,
                        help="seconds to wait for other processes to go quiet")
    args = parser.parse_args(argv)
    if args.side:
        side_main(args.side, args.steps, args.threads)
        return
    setup = load_setup(args.threads)
    if args.steps <= setup.warmup or args.steps % setup.warmup:
        parser.error(f"--steps must be a multiple of log_every ({setup.warmup}) above it")

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if args.profile or args.breakdown:
            if args.profile:
                profile(setup, args.steps, workdir)
            if args.breakdown:
                breakdown(setup, workdir)
            return
        start_load = wait_for_quiet(args.wait)
        memory = {side: child_memory(side, args.steps, args.threads)
                  for side in ("dgm", "plain")}
        _, dgm_model = run_dgm(setup, args.steps, workdir)  # warm-up and same-work check
        _, plain_model = run_plain(setup, args.steps)
        difference = max_weight_difference(dgm_model, plain_model)
        print(f"weights after {args.steps} steps: max |dgm - plain| = {difference:.3g}"
              + ("" if difference == 0 else " (the loops no longer do the same work)"))
        rounds = time_rounds(setup, args.steps, args.rounds, workdir)
        print("pieces of the extra work in a dgm step (each timed alone):")
        pieces = breakdown(setup, workdir)
    if not rounds.loads:
        sys.exit("no quiet round: other processes kept the CPU busy; try again later")

    figures: dict[str, Any] = {}
    for side, values in rounds.per_step.items():
        figures[side] = {"ms_per_step": [1e3 * v for v in values],
                         "median_ms_per_step": 1e3 * statistics.median(values),
                         "min_ms_per_step": 1e3 * min(values),
                         "max_ms_per_step": 1e3 * max(values),
                         "peak_rss_mb": memory[side]["peak_rss_mb"],
                         "rss_after_build_mb": memory[side]["rss_after_build_mb"]}
    dgm, plain = rounds.per_step["dgm"], rounds.per_step["plain"]
    figures["round_ratios"] = [d / p for d, p in zip(dgm, plain)]
    figures["ratio"] = statistics.median(figures["round_ratios"])
    figures["round_ratio_quartiles"] = (statistics.quantiles(figures["round_ratios"], n=4)
                                        if len(dgm) > 1 else figures["round_ratios"])
    figures["ratio_of_medians"] = statistics.median(dgm) / statistics.median(plain)
    figures["extra_work_fraction"] = (
        1e-3 * sum(pieces.values()) / figures["plain"]["median_ms_per_step"])
    figures["target_ratio"] = TARGET_RATIO
    figures["max_weight_difference"] = difference
    figures["other_processes_cores"] = {"before": start_load, "per_round": rounds.loads,
                                        "discarded_rounds": rounds.discarded}
    train = setup.recipe.train
    report = {
        "benchmark": "trainer_step",
        "machine": machine(),
        "settings": {
            "recipe": str(RECIPE.relative_to(ROOT)), "data": "image:digits (train split)",
            "batch_size": setup.recipe.data_loading.batch_size, "optimizer": "AdamW",
            "lr": train.lr, "weight_decay": train.weight_decay,
            "max_grad_norm": train.max_grad_norm, "log_every": train.log_every,
            "seed": setup.seed, "steps": args.steps,
            "timed_steps": args.steps - setup.warmup, "rounds": args.rounds,
        },
        "method": METHOD,
        "figures": figures,
        "extra_work_us_per_step": pieces,
    }
    print(f"dgm {figures['dgm']['median_ms_per_step']:.3f} ms/step, plain "
          f"{figures['plain']['median_ms_per_step']:.3f} ms/step; dgm/plain: median round "
          f"ratio {figures['ratio']:.3f}, ratio of medians {figures['ratio_of_medians']:.3f}"
          f" (target <= {TARGET_RATIO}); peak RSS dgm {figures['dgm']['peak_rss_mb']:.0f} MB,"
          f" plain {figures['plain']['peak_rss_mb']:.0f} MB")
    if not args.no_write:
        write_results(report)
        print(f"wrote {RESULTS / 'trainer_step.json'} and {RESULTS / 'trainer_step.md'}")


if __name__ == "__main__":
    main()
