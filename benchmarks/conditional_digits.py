"""Benchmark: every family conditioned on the digit class, on the embedded 8x8 digits.

Each row trains the shipped digits recipe of one family with ``condition.use = true``
(and, for diffusion, ``condition.dropout = 0.1`` so that classifier-free guidance has an
unconditional model to push against) through ``dgm run``: the same networks, steps and
budget (15 minutes of training on 2 CPU cores) as the unconditional row of
``digits_table``. For each row:

- the conditional test NLL, -log p(x | c) in nats per image, next to the unconditional
  row's -log p(x) (results/digits_table.json); the gain can be at most about
  ln 10 = 2.3 nats (the information in the label), plus whatever the condition helps
  the network fit;
- class accuracy: 50 samples of every digit, scored by the project's own digit
  classifier (``dgm_image.classifier``, trained on the training split; its accuracy on
  the real test digits is reported beside it); target at least 90 % for every family;
- within-class diversity: kernel MMD^2 between each class's samples and that class's
  real test digits, averaged over the classes, next to the same between the class's
  training and test digits;
- for diffusion, a guidance-scale curve (0, 1, 2, 4): class accuracy against
  within-class MMD.

Two more VAE rows give the digit another way (``data.condition``): ``vae-text``, its
name spelt in letters ("seven", a token condition through ``core:token-encoder``), and
``vae-thumbnail``, the digit averaged down to 4x4 (a tensor condition through
``core:tensor-encoder``; its samples of digit k are drawn for the thumbnails of the
real test digits k, so class accuracy says whether the 8x8 sample is the digit the
thumbnail shows).

Run by hand from the repository root (about an hour on 2 cores)::

    .venv/bin/python benchmarks/conditional_digits.py
    .venv/bin/python benchmarks/conditional_digits.py --only vae gan   # some rows
    .venv/bin/python benchmarks/conditional_digits.py --reuse          # re-score runs
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_support import machine, timed_dgm_run  # noqa: E402

from dgm.loaded_run import LoadedRun  # noqa: E402
from dgm.metrics import kernel_mmd  # noqa: E402
from dgm.runs import RunDir  # noqa: E402
from dgm.sampling import draw_samples  # noqa: E402
from dgm_image.classifier import predict, test_accuracy, train_classifier  # noqa: E402
from dgm_image.datasets import digits  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
BUDGET_S = 15 * 60
PER_CLASS = 50
TARGET_ACCURACY = 0.90
GUIDANCE = (0.0, 1.0, 2.0, 4.0)

ROWS: dict[str, dict[str, Any]] = {
    "autoregressive": {"recipe": "recipes/image/digits-pixelcnn.toml"},
    "vae": {"recipe": "recipes/image/digits-vae.toml"},
    "vae-dim4": {"recipe": "recipes/image/digits-vae.toml", "overrides": ["condition.dim=4"],
                 "unconditional": "vae"},
    "flow": {"recipe": "recipes/image/digits-flow.toml"},
    "diffusion": {"recipe": "recipes/image/digits-diffusion.toml",
                  "overrides": ["condition.dropout=0.1"]},
    "gan": {"recipe": "recipes/image/digits-gan.toml"},
    "vae-text": {"recipe": "recipes/image/digits-vae.toml", "condition": "text",
                 "overrides": ["data.condition=text"], "unconditional": "vae"},
    "vae-thumbnail": {"recipe": "recipes/image/digits-vae.toml", "condition": "thumbnail",
                      "overrides": ["data.condition=thumbnail"], "unconditional": "vae"},
}
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def by_class(split: str) -> dict[int, torch.Tensor]:
    data = digits(split)
    return {k: data.x[data.c == k] for k in range(10)}


def given_digit(info: Any, k: int, test: dict[int, torch.Tensor], n: int
                ) -> dict[str, Any]:
    """The ``draw_samples`` keywords that ask for digit ``k`` in the run's condition: its
    class, its name, or the thumbnails of ``n`` real test digits k."""
    if info.condition.kind == "tokens":
        return {"condition": info.condition.encode_text(WORDS[k])}
    if info.condition.kind == "tensor":
        real = test[k][torch.arange(n) % len(test[k])]
        return {"conditions": torch.nn.functional.avg_pool2d(real, 2)}
    return {"condition": k}


def score(loaded: Any, classifier: Any, test: dict[int, torch.Tensor],
          options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Class accuracy and within-class MMD of ``PER_CLASS`` samples of every digit."""
    mmd = kernel_mmd()
    accuracy, distances = {}, {}
    for k in range(10):
        samples = draw_samples(loaded.family, PER_CLASS, 100, 1000 + k, options,
                               **given_digit(loaded.info, k, test, PER_CLASS))
        accuracy[str(k)] = float((predict(classifier, samples) == k).double().mean())
        distances[str(k)] = float(mmd(samples.flatten(1), test[k].flatten(1)))
    return {"class_accuracy": sum(accuracy.values()) / 10, "per_class_accuracy": accuracy,
            "within_class_mmd": sum(distances.values()) / 10,
            "per_class_mmd": distances}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench-conditional")
    parser.add_argument("--note", default="", help="a remark kept in the results")
    parser.add_argument("--reuse", action="store_true",
                        help="score runs already trained in --runs instead of retraining")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="recipe overrides for every row (a quick check: "
                        "train.steps=5 evaluate.max_examples=8)")
    parser.add_argument("--name", default="conditional_digits",
                        help="results file name (keep the default for the real benchmark)")
    parser.add_argument("--pictures", type=Path, default=None, metavar="FOLDER",
                        help="only write, from the runs already trained, one PNG per row: "
                        "a line of samples for each digit 0-9")
    args = parser.parse_args()
    if args.pictures:
        write_pictures(args.runs, args.pictures, args.only)
        return
    args.runs.mkdir(parents=True, exist_ok=True)
    results_file = RESULTS / f"{args.name}.json"
    previous = json.loads(results_file.read_text()) if results_file.is_file() else {}
    rows = {r["row"]: r for r in previous.get("rows", [])}
    unconditional = {r["row"]: r["report"] for r in
                     json.loads((RESULTS / "digits_table.json").read_text())["rows"]}
    start = time.perf_counter()
    classifier = train_classifier()
    classifier_seconds = time.perf_counter() - start
    classifier_accuracy = test_accuracy(classifier)
    test, train = by_class("test"), by_class("train")
    mmd = kernel_mmd()
    reference = sum(float(mmd(train[k].flatten(1), test[k].flatten(1)))
                    for k in range(10)) / 10
    print(f"classifier: {classifier_accuracy:.1%} on the real test digits "
          f"({classifier_seconds:.0f} s); within-class MMD train vs test {reference:.4f}",
          flush=True)
    for name in args.only:
        row = ROWS[name]
        print(f"training {name} ({row['recipe']}, condition.use=true) ...", flush=True)
        overrides = ["condition.use=true", *row.get("overrides", []), *args.set]
        timings = timed_dgm_run(row["recipe"], args.runs / name, overrides, args.reuse,
                                cwd=ROOT)
        report = json.loads((args.runs / name / "evaluation.json").read_text())
        loaded = LoadedRun.open(RunDir.open(args.runs / name))
        scored = score(loaded, classifier, test)
        result = {"row": name, "recipe": row["recipe"],
                  "overrides": overrides,
                  "report": report, "steps": timings["steps"],
                  "train_seconds": timings["train_seconds"],
                  "run_seconds": timings["run_seconds"],
                  "within_budget": timings["train_seconds"] <= BUDGET_S, **scored,
                  "meets_accuracy_target": scored["class_accuracy"] >= TARGET_ACCURACY}
        before = unconditional.get(row.get("unconditional", name), {}).get("nll_nats")
        if "nll_nats" in report and before is not None:
            result["unconditional_nll_nats"] = before
            result["nll_gain_nats"] = before - report["nll_nats"]
        if name == "diffusion":
            result["guidance"] = [{"guidance": g, **score(loaded, classifier, test,
                                                          {"guidance": g})}
                                  for g in GUIDANCE]
        rows[name] = result
        print(f"  {timings['train_seconds']:.0f} s training; NLL "
              f"{report.get('nll_nats', math.nan):.2f}; class accuracy "
              f"{scored['class_accuracy']:.1%}; within-class MMD "
              f"{scored['within_class_mmd']:.4f}", flush=True)
        save(args, rows, classifier_accuracy, classifier_seconds, reference, results_file)
    print(save(args, rows, classifier_accuracy, classifier_seconds, reference,
               results_file).read_text())


def save(args: argparse.Namespace, rows: dict[str, Any], classifier_accuracy: float,
         classifier_seconds: float, reference: float, results_file: Path) -> Path:
    """Write the results so far (JSON and Markdown); returns the Markdown file."""
    out = {"benchmark": "conditional_digits", "machine": machine(),
           "settings": {"budget_seconds": BUDGET_S, "threads": os.cpu_count(),
                        "samples_per_class": PER_CLASS, "guidance": list(GUIDANCE),
                        "data": "image:digits, train 1000 / test 447, 17 levels",
                        "note": args.note},
           "classifier": {"test_accuracy": classifier_accuracy,
                          "train_seconds": classifier_seconds},
           "within_class_mmd_train_vs_test": reference,
           "rows": [rows[n] for n in ROWS if n in rows]}
    RESULTS.mkdir(parents=True, exist_ok=True)
    results_file.write_text(json.dumps(out, indent=2) + "\n")
    write_markdown(out, RESULTS / f"{args.name}.md")
    return RESULTS / f"{args.name}.md"


def write_pictures(runs: Path, folder: Path, names: list[str], per_class: int = 8) -> None:
    """``digits-given-class-ROW.png``: row k holds ``per_class`` samples of digit k."""
    from dgm_image.codec import write_image
    from dgm_image.previews import make_grid

    folder.mkdir(parents=True, exist_ok=True)
    test = by_class("test")
    for name in names:
        if not (runs / name / "model").is_dir():
            continue
        loaded = LoadedRun.open(RunDir.open(runs / name))
        rows = [draw_samples(loaded.family, per_class, per_class, 2000 + k,
                             **given_digit(loaded.info, k, test, per_class))
                for k in range(10)]
        write_image(make_grid(torch.cat(rows), columns=per_class),
                    folder / f"digits-given-class-{name}.png")
        print(f"wrote {folder / f'digits-given-class-{name}.png'}")


def _nll(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def write_markdown(out: dict[str, Any], path: Path) -> None:
    m = out["machine"]
    lines = [
        "# conditional_digits: every family given the digit class (8x8 digits)", "",
        f"{m['date']}; {m['platform']}; {m['cpu_count']} CPUs, {m['torch_threads']} torch "
        f"threads; torch {m['torch']}, diffusers {m['diffusers']}. Each row is the "
        "family's shipped digits recipe with `condition.use=true` (same networks and "
        "steps as digits_table; `condition.dim` 32 unless the row says otherwise: "
        "vae-dim4 is the VAE with `condition.dim=4`; diffusion adds "
        "`condition.dropout=0.1`; vae-text is given the digit's name spelt in letters "
        "(`data.condition=text`, core:token-encoder) and vae-thumbnail the digit "
        "averaged down to 4x4 (`data.condition=thumbnail`, core:tensor-encoder; scored "
        "on samples drawn for the thumbnails of real test digits)); training budget "
        "15 minutes on 2 CPU cores. NLL in "
        "nats per test image (447 images, 17 levels); "
        f"{out['settings']['samples_per_class']} samples per digit scored by the "
        "project's digit classifier, whose accuracy on the real test digits is "
        f"{out['classifier']['test_accuracy']:.1%}. Within-class MMD^2: each digit's "
        "samples against that digit's real test images, averaged over digits; between "
        "real sets (train vs test) it is "
        f"{out['within_class_mmd_train_vs_test']:.4f}.",
        *(["", out["settings"]["note"]] if out["settings"].get("note") else []), "",
        "| family | -log p(x given c) | -log p(x) (digits_table) | gain (nats) | "
        "likelihood | class accuracy (target >= 90 %) | within-class MMD^2 | "
        "training (s) |",
        "|---|---:|---:|---:|---|---:|---:|---:|"]
    for r in out["rows"]:
        report = r["report"]
        kind = ("none (implicit)" if report["kind"] == "none"
                else f"{report['kind']}: {report['method']}")
        gain = r.get("nll_gain_nats")
        mark = "" if r["meets_accuracy_target"] else " (below target)"
        lines.append(
            f"| {r['row']} | {_nll(report.get('nll_nats'))} | "
            f"{_nll(r.get('unconditional_nll_nats'))} | "
            f"{'-' if gain is None else f'{gain:+.2f}'} | {kind} | "
            f"{r['class_accuracy']:.1%}{mark} | {r['within_class_mmd']:.4f} | "
            f"{r['train_seconds']:.0f}{'' if r['within_budget'] else ' (over budget)'} |")
    for r in out["rows"]:
        if "guidance" in r:
            lines += ["", f"Classifier-free guidance ({r['row']}, trained with condition "
                      "dropout 0.1; guidance 0 is the unconditional model, 1 the plain "
                      "conditional one):", "",
                      "| guidance | class accuracy | within-class MMD^2 |", "|---:|---:|---:|"]
            lines += [f"| {g['guidance']:g} | {g['class_accuracy']:.1%} | "
                      f"{g['within_class_mmd']:.4f} |" for g in r["guidance"]]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
