"""Benchmark: dgm in its two supported environments, side by side in one run.

- ``a``: the pinned lock, as the README's set-up command makes it (torch 2.11.0, the
  CUDA build run on the CPU, with torchaudio 2.11.0; editable installs).
- ``b``: the four distributions' wheels beside torch 2.13.0+cpu, with a torchaudio
  2.11.0 that cannot load there, as ``.ci/newer-cpu-torch --install-only`` makes it.
- ``c``: the same wheels beside the newest torch pip installs on this machine (2.14.1,
  the CUDA build, run on the CPU) with torchaudio 2.11.0, which loads there. Not in CI
  (5.5 GB); measured here so the supported range's top is tried too.

For each: the torch version; the install time into a clean virtual environment (pip's
cache already holds the packages, as on any second install on a machine); the tests CI
runs there (count and time: the full suite in ``a``; the fast tier and the audio tests
in ``b``; the fast tier in ``c``); the digits VAE's test NLL
(recipes/image/digits-vae.toml) and the conditional speech diffusion's digit-classifier
accuracy (recipes/speech/digits-mel-diffusion.toml, 10 generated clips per digit scored
by ``dgm_audio.intelligibility``).

Run by hand from the repository root, with nothing else running (about an hour on 2
cores)::

    .venv/bin/python benchmarks/environments.py
    .venv/bin/python benchmarks/environments.py --only b c --skip-speech
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_support import machine, timed_dgm_run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
VAE = "recipes/image/digits-vae.toml"
SPEECH = "recipes/speech/digits-mel-diffusion.toml"
TEST_COMMANDS = {
    "a": [["-m", "pytest", "-q", "-p", "no:cacheprovider"]],
    "b": [["-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow"],
          ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "slow", "tests/audio"]],
    "c": [["-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow"]],
}
NEWEST_TORCH = "2.14.1"
DESCRIPTIONS = {
    "a": "pinned lock (requirements-dev.txt), editable installs",
    "b": "wheels beside a CPU-only torch, torchaudio present but unable to load",
    "c": "wheels beside the newest torch pip installs here, with torchaudio",
}


def install(name: str, venv: Path) -> float:
    """Make environment ``name`` in ``venv`` from nothing; the seconds it took."""
    shutil.rmtree(venv, ignore_errors=True)
    if name == "a":
        command = (f"python3 -m venv {venv} && {venv}/bin/pip install -q "
                   "-r requirements-dev.txt")
    elif name == "b":
        command = f"bash .ci/newer-cpu-torch --install-only {venv}"
    else:  # the wheels row b built, with the lock less its torch build
        command = (f"python3 -m venv {venv} && {venv}/bin/pip install -q "
                   f"torch=={NEWEST_TORCH} torchaudio==2.11.0 && {venv}/bin/pip install -q "
                   f"-c dist/constraints-cpu.txt \"$(ls dist/dgm_core-*.whl)[testing]\" "
                   "dist/dgm_image-*.whl dist/dgm_audio-*.whl dist/dgm_texture-*.whl")
    start = time.perf_counter()
    proc = subprocess.run(command, shell=True, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"installing environment {name} failed:\n{proc.stdout}\n"
                         f"{proc.stderr}")
    return seconds


def python_of(venv: Path, code: str) -> str:
    proc = subprocess.run([str(venv / "bin/python"), "-c", code], capture_output=True,
                          text=True, cwd=ROOT, check=True)
    return proc.stdout.strip()


def run_tests(name: str, venv: Path) -> dict[str, Any]:
    """Run what CI runs in environment ``name``; counts and seconds, summed."""
    totals = {"passed": 0, "skipped": 0, "failed": 0, "seconds": 0.0, "commands": []}
    for args in TEST_COMMANDS[name]:
        proc = subprocess.run([str(venv / "bin/python"), *args], cwd=ROOT,
                              capture_output=True, text=True)
        tail = proc.stdout.strip().splitlines()[-1]
        for kind in ("passed", "skipped", "failed"):
            found = re.search(rf"(\d+) {kind}", tail)
            totals[kind] += int(found.group(1)) if found else 0
        totals["seconds"] += float(re.search(r" in ([\d.]+)s", tail).group(1))
        totals["commands"].append({"command": " ".join(["python", *args]), "summary": tail})
    return totals


def score_speech(venv: Path, run: Path) -> dict[str, Any]:
    code = ("import json; from pathlib import Path; "
            "from dgm_audio.intelligibility import score_run; "
            f"print(json.dumps(score_run(Path({str(run)!r}), n_per_class=10, "
            f"out=Path({str(run / 'per-digit')!r}))))")
    return json.loads(python_of(venv, code).splitlines()[-1])


def measure(name: str, venv: Path, runs: Path, skip_speech: bool) -> dict[str, Any]:
    print(f"environment {name}: installing into {venv} ...", flush=True)
    row: dict[str, Any] = {"description": DESCRIPTIONS[name],
                           "install_seconds": install(name, venv)}
    python = str(venv / "bin/python")
    row["torch"] = python_of(venv, "import torch; print(torch.__version__)")
    row["torchaudio_loads"] = python_of(
        venv, "try:\n import torchaudio\n print(True)\nexcept (ImportError, OSError):\n"
              " print(False)") == "True"
    print(f"environment {name}: torch {row['torch']}; running the tests ...", flush=True)
    row["tests"] = run_tests(name, venv)
    print(f"environment {name}: the digits VAE ...", flush=True)
    vae = runs / name / "digits-vae"
    row["vae"] = timed_dgm_run(VAE, vae, [], cwd=ROOT, python=python)
    row["vae"].pop("stdout")
    report = json.loads((vae / "evaluation.json").read_text())
    row["vae"].update(nll_nats=report["nll_nats"], nll_nats_stderr=report["nll_nats_stderr"])
    if not skip_speech:
        print(f"environment {name}: the speech diffusion ...", flush=True)
        speech = runs / name / "speech"
        row["speech"] = timed_dgm_run(SPEECH, speech, [], cwd=ROOT, python=python)
        row["speech"].pop("stdout")
        row["speech"]["intelligibility"] = score_speech(venv, speech)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=list(DESCRIPTIONS),
                        default=list(DESCRIPTIONS))
    parser.add_argument("--venvs", type=Path, default=Path("/tmp/dgm-environments"))
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench-environments")
    parser.add_argument("--skip-speech", nargs="*", choices=list(DESCRIPTIONS),
                        default=["c"], help="environments not to train the speech "
                        "recipe in (default: c); with no names, all")
    args = parser.parse_args()
    if args.skip_speech == []:
        args.skip_speech = list(DESCRIPTIONS)
    if "c" in args.only and not list((ROOT / "dist").glob("dgm_core-*.whl")):
        raise SystemExit("environment c installs the wheels environment b builds: include "
                         "b (--only b c), or run .ci/newer-cpu-torch first")
    results_file = RESULTS / "environments.json"
    previous = json.loads(results_file.read_text()) if results_file.is_file() else {}
    rows = previous.get("rows", {})
    for name in args.only:
        rows[name] = measure(name, args.venvs / name, args.runs, name in args.skip_speech)
        rows[name]["date"] = machine()["date"]
    out = {"benchmark": "environments", "machine": machine(), "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    results_file.write_text(json.dumps(out, indent=2) + "\n")
    write_markdown(out)
    print((RESULTS / "environments.md").read_text())


def write_markdown(out: dict[str, Any]) -> None:
    m, rows = out["machine"], out["rows"]
    lines = ["# environments: dgm in its supported environments", "",
             f"{m['date']}; {m['platform']}; {m['cpu_count']} CPUs. The "
             "environments measured one after the other in one run, nothing else running "
             "(each row's date is in the json).", "",
             "| environment | torch | torchaudio loads | install (s) | tests | tests (s) | "
             "digits VAE NLL (nats) | speech: digits heard right | speech training (s) |",
             "|---|---|---|---:|---|---:|---|---|---:|"]
    for name, r in rows.items():
        t = r["tests"]
        tests = f"{t['passed']} passed, {t['skipped']} skipped, {t['failed']} failed"
        speech = r.get("speech")
        heard = (f"{speech['intelligibility']['accuracy_on_generated']:.1%}" if speech
                 else "not run")
        trained = f"{speech['train_seconds']:.0f}" if speech else "-"
        lines.append(f"| {name}: {r['description']} | {r['torch']} | "
                     f"{'yes' if r['torchaudio_loads'] else 'no'} | "
                     f"{r['install_seconds']:.0f} | {tests} | {t['seconds']:.0f} | "
                     f"{r['vae']['nll_nats']:.2f} ± {r['vae']['nll_nats_stderr']:.2f} | "
                     f"{heard} | {trained} |")
    nll = {name: r["vae"]["nll_nats"] for name, r in rows.items()}
    lines += ["", "Digits VAE test NLL to every digit: " + ", ".join(
        f"{name} {value!r}" for name, value in nll.items()) + (
        " (identical)" if len(set(nll.values())) == 1 else "") + "."]
    lines += ["", "Tests: the full suite in a; the fast tier (`-m \"not slow\"`) and the slow "
              "audio tests in b, as `.ci/run` runs them; the fast tier in c. The install "
              "times start from an empty venv with pip's cache already holding the "
              "packages; b's includes building the four sdists and wheels and `twine "
              "check`. The speech figure is "
              "the share of 100 generated clips (10 per digit) the project's digit "
              "classifier hears as the digit asked for."]
    (RESULTS / "environments.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
