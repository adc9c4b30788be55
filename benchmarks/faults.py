"""Benchmark: fault injection into real runs, in the manner of a storage system's report.

Every probe runs the real ``dgm`` command in a child process against the digits VAE and
records what a user saw (exit code, whether the message is one ``dgm: error:``
paragraph without a traceback, its first words) and whether anything already saved was
lost: the files of the last complete checkpoint, the final weights and the metrics
records up to that checkpoint are hashed before the fault and compared after it.

* SIGKILL at random moments, some of them while a checkpoint is being written (the
  child is killed the instant a ``.partial-*`` folder appears); the run is resumed after
  each kill and its final weights compared with an uninterrupted run's, bit for bit.
* A full disk (the run folder on a small tmpfs), a read-only file system (the tmpfs
  remounted read-only) and a folder the user may not write (the command run as
  ``nobody``): real kernel errors, not stubs. Needs root on Linux.
* Two ``dgm run`` on one folder; damaged checkpoint files, final weights and
  ``data_info.json``; a crafted pickle; resources beyond the machine.
* Findings covered by the test suite (plugin names, paths, NaN skipping, bad data
  files) are run there by node id and reported pass or fail.

Run by hand as root from the repository root (about 5 minutes on 2 cores)::

    .venv/bin/python benchmarks/faults.py
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmark_support import machine
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
RECIPE = str(REPO / "recipes" / "image" / "digits-vae.toml")
QUICK = ["train.progress=false", "evaluate.likelihood.k=2", "evaluate.max_examples=8",
         "sample.n=4", "evaluate.metric_samples=8"]
PROBE = [*QUICK, "train.checkpoint_every=10", "train.keep_checkpoints=10"]
"""Probes keep every checkpoint, so 'data lost' never counts a pruned one."""
KILL_RUN = [*QUICK, "train.steps=3000", "train.checkpoint_every=100",
            "train.keep_checkpoints=2", "train.log_every=50"]


def dgm(*args: str, cwd: Path, user: str | None = None, timeout: float = 600
        ) -> dict[str, Any]:
    """Run ``dgm`` and return its exit code, the ``dgm: error:`` line, whether that is one
    paragraph without a traceback, its warnings, wall time and peak resident memory."""
    command = [sys.executable, "-m", "dgm", *args]
    if user:
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups",
                   *command]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "HOME": "/tmp"}
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # the child's own peak memory
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("dgm: error:")]
    return {"code": proc.returncode, "seconds": round(time.perf_counter() - start, 2),
            "one_paragraph": len(errors) == 1 and "Traceback" not in stderr,
            "message": errors[0][:400] if errors else (lines[-1][:400] if lines else ""),
            "warnings": [line[:300] for line in lines if line.startswith("dgm: warning:")],
            "resumed": "resumed from step" in stdout,
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def saved_state(run: Path, weights: bool = True) -> dict[str, str]:
    """Hashes of what a fault must not lose: every intact checkpoint's files, the metrics
    records up to the newest intact one, and (``weights``) the final weights. A probe
    that trains on leaves ``weights`` out: training rewrites them by design."""
    from dgm.training import checkpoint_damage

    out: dict[str, str] = {}
    intact = [c for c in sorted((run / "checkpoints").glob("step-*"))
              if checkpoint_damage(c) is None] if run.is_dir() else []
    for checkpoint in intact:
        for path in sorted(checkpoint.iterdir()):
            out[str(path.relative_to(run))] = _hash(path.read_bytes())
    step = int(intact[-1].name.split("-")[1]) if intact else 0
    if weights and (run / "model" / "model.safetensors").is_file():
        out["model/model.safetensors"] = _hash((run / "model" / "model.safetensors")
                                               .read_bytes())
    if (run / "metrics.jsonl").is_file():
        out["metrics.jsonl"] = _metrics_hash(run / "metrics.jsonl", step)
        out["metrics.jsonl"] += f" to step {step}"
    return out


def _metrics_hash(path: Path, step: int) -> str:
    kept = [line for line in path.read_text().splitlines()
            if json.loads(line).get("step", 0) <= step]
    return _hash("\n".join(kept).encode())


def _hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def lost(before: dict[str, str], run: Path) -> list[str]:
    """What of ``before`` is now missing or different on disk. A damaged checkpoint set
    aside (``.damaged-step-N``) is not in ``before``: only intact ones are."""
    gone = []
    for key, value in before.items():
        if key == "metrics.jsonl":
            digest, step = value.split(" to step ")
            if _metrics_hash(run / key, int(step)) != digest:
                gone.append(f"metrics.jsonl to step {step}")
        elif not (run / key).is_file() or _hash((run / key).read_bytes()) != value:
            gone.append(key)
    return gone


def row(fault: str, probe: str, result: dict[str, Any], expected: str, data_lost: list[str],
        ok: bool) -> dict[str, Any]:
    print(f"{'ok ' if ok and not data_lost else 'BAD'} {fault}: {result.get('message', '')[:150]}",
          flush=True)
    return {"fault": fault, "probe": probe, "expected": expected, "exit_code":
            result.get("code"), "one_paragraph": result.get("one_paragraph"), "message":
            result.get("message"), "warnings": result.get("warnings", []), "data_lost":
            data_lost, "as_expected": ok, "seconds": result.get("seconds"),
            "peak_rss_mb": result.get("peak_rss_mb"), "resumed": result.get("resumed")}


def trained(work: Path, name: str, *extra: str) -> Path:
    result = dgm("run", RECIPE, f"run.dir={name}", *PROBE, "train.steps=40", *extra,
                 cwd=work)
    assert result["code"] == 0, result
    return work / name


def kills(work: Path, n_kills: int, in_write: int, seed: int) -> dict[str, Any]:
    """SIGKILL ``n_kills`` times (``in_write`` of them inside a checkpoint write), resume
    to the end, and compare with an uninterrupted run."""
    reference = dgm("run", RECIPE, "run.dir=reference", *KILL_RUN, cwd=work)
    assert reference["code"] == 0, reference
    rng = random.Random(seed)
    run = work / "killed"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done, inside, moments = 0, 0, []
    while done < n_kills:
        proc = subprocess.Popen([sys.executable, "-m", "dgm", "run", RECIPE, "run.dir=killed",
                                 *KILL_RUN], cwd=work, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        want_write = inside < in_write and (done % 4 == 0 or n_kills - done <= in_write - inside)
        deadline = time.monotonic() + 120
        killed_in_write = False
        if want_write:
            while proc.poll() is None and time.monotonic() < deadline:
                if list((run / "checkpoints").glob(".partial-*")) if run.is_dir() else []:
                    proc.kill()
                    killed_in_write = True
                    break
                time.sleep(0.001)
        else:  # once this process has logged a step of its own
            metrics = run / "metrics.jsonl"
            seen = metrics.stat().st_mtime_ns if metrics.is_file() else None
            while proc.poll() is None and time.monotonic() < deadline and (
                    not metrics.is_file() or metrics.stat().st_mtime_ns == seen):
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 2.0))
            if proc.poll() is None:
                proc.kill()
        proc.wait()
        if proc.returncode == 0:  # finished before the kill came
            shutil.rmtree(run)
            continue
        done += 1
        inside += killed_in_write
        steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text()
                 .splitlines() if line.strip()] if (run / "metrics.jsonl").is_file() else []
        moments.append({"in_write": killed_in_write, "last_logged_step": max(steps, default=0)})
    final = dgm("run", RECIPE, "run.dir=killed", *KILL_RUN, cwd=work)
    assert final["code"] == 0, final
    a = load_file(work / "reference" / "model" / "model.safetensors")
    b = load_file(run / "model" / "model.safetensors")
    identical = a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    logged = [r["step"] for r in records if "loss" in r]
    return {"kills": done, "kills_inside_a_checkpoint_write": inside,
            "bit_identical_final_weights": identical,
            "metrics_steps_unique_and_in_order": logged == sorted(set(logged)),
            "steps": 3000, "checkpoint_every": 100, "moments": moments}


def tmpfs(path: Path, size: str, options: str = "") -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}{options}", "tmpfs",
                    str(path)], check=True)


def probes(work: Path) -> list[dict[str, Any]]:
    rows = []
    # -- two writers --------------------------------------------------------------------
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    first = subprocess.Popen([sys.executable, "-m", "dgm", "run", RECIPE, "run.dir=twice",
                              *QUICK, "train.steps=6000", "train.log_every=10"], cwd=work,
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (work / "twice" / "metrics.jsonl").is_file():
        time.sleep(0.05)
    second = dgm("run", RECIPE, "run.dir=twice", *QUICK, "train.steps=6000",
                 "train.log_every=10", cwd=work)
    first.wait()
    steps = [json.loads(line)["step"] for line in (work / "twice" / "metrics.jsonl")
             .read_text().splitlines()]
    rows.append(row("two dgm run on one folder", "second started while the first trains",
                    second, "refused naming the holder; the first finishes alone", [],
                    second["code"] == 2 and "in use" in second["message"] and first.returncode
                    == 0 and steps == sorted(set(steps))))
    # -- a full disk ----------------------------------------------------------------------
    disk = work / "small-disk"
    tmpfs(disk, "11M")
    try:
        result = dgm("run", RECIPE, f"run.dir={disk / 'run'}", *PROBE,
                     "train.steps=60", "--allow-outside", cwd=work)
        before = saved_state(disk / "run", weights=False)
        partial = list((disk / "run" / "checkpoints").glob(".partial-*"))
        rows.append(row("disk full during a checkpoint", "run folder on an 11 MB tmpfs",
                        result, "one paragraph naming the file; last checkpoint kept",
                        [], result["code"] == 2 and "disk is full" in result["message"]
                        and not partial))
        subprocess.run(["mount", "-o", "remount,size=64M", str(disk)], check=True)
        again = dgm("run", RECIPE, f"run.dir={disk / 'run'}", *PROBE,
                    "train.steps=60", "--allow-outside", cwd=work)
        rows.append(row("disk full, then space freed", "same command again", again,
                        "resumes from the last checkpoint and finishes",
                        lost(before, disk / "run"), again["code"] == 0
                        and again["resumed"]))
        # the recipe write on a disk with no room at all
        subprocess.run(["mount", "-o", "remount,size=64M", str(disk)], check=True)
        filler = disk / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M", "count=64"],
                       capture_output=True)
        result = dgm("run", RECIPE, f"run.dir={disk / 'new'}", *QUICK, "train.steps=4",
                     "--allow-outside", cwd=work)
        leftovers = [p.name for p in (disk / "new").iterdir()] if (disk / "new").is_dir() else []
        filler.unlink()
        again = dgm("run", RECIPE, f"run.dir={disk / 'new'}", *QUICK, "train.steps=4",
                    "--allow-outside", cwd=work)
        rows.append(row("disk full as a run starts (its .lock, then recipe.toml)",
                        "a new run folder on a 64 MB tmpfs filled to the last byte", result,
                        "one paragraph; no temporary file left; "
                        "the folder is usable once space is freed", [], result["code"] == 2
                        and not [n for n in leftovers if n.endswith(".tmp")]
                        and again["code"] == 0))
        # a read-only file system
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        before = saved_state(disk / "run")
        for what, argv in (("dgm sample", ["sample", str(disk / "run"), "--n", "2"]),
                           ("dgm run (resume)", ["run", RECIPE, f"run.dir={disk / 'run'}",
                                                 *PROBE, "train.steps=80",
                                                 "--allow-outside"])):
            result = dgm(*argv, cwd=work)
            rows.append(row(f"read-only file system: {what}", "tmpfs remounted read-only",
                            result, "one paragraph naming the file", lost(before,
                                                                          disk / "run"),
                            result["code"] == 2 and "read-only" in result["message"]))
    finally:
        subprocess.run(["umount", str(disk)], check=False)
    # -- a folder the user may not write ---------------------------------------------------
    theirs = trained(work, "not-yours")
    before = saved_state(theirs)
    os.chmod(work, 0o755)
    result = dgm("sample", "not-yours", "--n", "2", cwd=work, user="65534")
    rows.append(row("permission denied", "dgm sample as user nobody on root's run", result,
                    "one paragraph naming the file", lost(before, theirs),
                    result["code"] == 2 and "permission was denied" in result["message"]))
    # -- damaged files ---------------------------------------------------------------------
    damages = {
        "garbage safetensors in the newest checkpoint": lambda r: (
            r / "checkpoints" / "step-00000040" / "model.safetensors").write_bytes(b"\0" * 64),
        "train_state.json missing": lambda r: (
            r / "checkpoints" / "step-00000040" / "train_state.json").unlink(),
        "train_state.json corrupt": lambda r: (
            r / "checkpoints" / "step-00000040" / "train_state.json").write_text('{"st'),
        "an empty step-N folder": lambda r: (r / "checkpoints" / "step-00000045").mkdir(),
    }
    for fault, damage in damages.items():
        run = trained(work, "damaged-" + str(len(rows)))
        damage(run)
        before = saved_state(run, weights=False)
        result = dgm("run", RECIPE, f"run.dir={run.name}", *PROBE, "train.steps=50",
                     cwd=work)
        rows.append(row(fault, "resume after the damage", result,
                        "set aside as .damaged-step-N with a warning; the one before resumed",
                        lost(before, run), result["code"] == 0 and any(
                            "is damaged" in w for w in result["warnings"])))
    for fault, damage, command in (
            ("garbage final weights", lambda r: (r / "model" / "model.safetensors")
             .write_bytes(b"\xff" * 100), "sample"),
            ("garbage data_info.json", lambda r: (r / "model" / "data_info.json")
             .write_text("garbage"), "evaluate"),
            ("huge shape in data_info.json", lambda r: _tamper_shape(r), "sample"),
            ("crafted pickle in a checkpoint", lambda r: _crafted_pickle(r), "run")):
        run = trained(work, "damaged-" + str(len(rows)))
        damage(run)
        before = saved_state(run)
        argv = (["run", RECIPE, f"run.dir={run.name}", *PROBE, "train.steps=50"]
                if command == "run"
                else [command, run.name] + (["--n", "2", "--out", "s"] if command == "sample"
                                            else []))
        result = dgm(*argv, cwd=work)
        rows.append(row(fault, f"dgm {command}", result, "one paragraph naming the file and "
                        "what to do", lost(before, run), result["code"] == 2
                        and result["one_paragraph"] and not (work / "pwned").exists()))
    # -- resources -------------------------------------------------------------------------
    for override in ("networks.encoder.hidden=[60000,60000]", "family.latent_dim=1000000000"):
        result = dgm("run", RECIPE, "run.dir=huge", *QUICK, override, cwd=work)
        rows.append(row(f"model too large: {override}", "dgm run", result,
                        "refused with the estimate before allocating", [],
                        result["code"] == 2 and "this run may use" in result["message"]
                        and (result["peak_rss_mb"] or 0) < 2000))
    small = trained(work, "sampled")
    disk = work / "sample-disk"
    tmpfs(disk, "2M")
    try:
        result = dgm("sample", small.name, "--n", "1000000000", "--out", str(disk / "s"),
                     cwd=work)
        written = len(list((disk / "s").glob("sample-*.png")))
    finally:
        subprocess.run(["umount", str(disk)], check=False)
    rows.append(row("dgm sample --n 1000000000", "samples to a 2 MB tmpfs", result,
                    "streams to disk, stops when the rest would not fit, keeps what it "
                    f"wrote ({written} files)", [], result["code"] == 2 and written > 0
                    and (result["peak_rss_mb"] or 0) < 2000))
    deep = work / "deep.toml"
    deep.write_text(Path(RECIPE).read_text() + "\n[run.x]\ny = " + "[" * 5000 + "]" * 5000)
    result = dgm("run", str(deep), *QUICK, cwd=work)
    rows.append(row("a recipe nested 5000 deep", "dgm run", result, "one paragraph", [],
                    result["code"] == 2 and result["one_paragraph"]))
    return rows


def _tamper_shape(run: Path) -> None:
    path = run / "model" / "data_info.json"
    info = json.loads(path.read_text())
    info["shape"] = [1, 100000, 100000]
    path.write_text(json.dumps(info))


class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _crafted_pickle(run: Path) -> None:
    with open(run / "checkpoints" / "step-00000040" / "random_states_0.pkl", "wb") as f:
        pickle.dump(_RunsCode(str(run.parent / "pwned")), f, protocol=2)


COVERED_BY_TESTS = {
    "a plugin registering another plugin's name (real entry point)":
        "tests/cli/test_plugin_projects.py",
    "traversal and unsafe run names, run.dir outside": "tests/cli/test_run_folder_containment.py",
    "on_nan = skip with weights gone non-finite":
        "tests/core/test_training.py::test_skipping_gives_up_after_a_bounded_run_of_nans_"
        "and_keeps_the_checkpoint",
    "bad files among good ones (truncated WAV, unreadable, silent)":
        "tests/audio/test_data.py tests/core/test_folders.py",
    "out-of-range and non-finite numbers": "tests/cli/test_numeric_settings.py",
    "a second writer, and a SIGKILLed holder's lock": "tests/cli/test_run_folder_lock.py",
}


def tested(work: Path) -> list[dict[str, Any]]:
    rows = []
    for fault, nodes in COVERED_BY_TESTS.items():
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               *nodes.split()], cwd=REPO, capture_output=True, text=True)
        summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        rows.append({"fault": fault, "probe": f"pytest {nodes}", "expected": "tests pass",
                     "exit_code": proc.returncode, "message": summary, "data_lost": [],
                     "as_expected": proc.returncode == 0,
                     "seconds": round(time.perf_counter() - start, 1)})
        print(f"{'ok ' if proc.returncode == 0 else 'BAD'} {fault}: {summary}", flush=True)
    return rows


def write_results(result: dict[str, Any]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "faults.json").write_text(json.dumps(result, indent=2) + "\n")
    m, k = result["machine"], result["sigkill"]
    lines = ["# faults: fault injection into real runs (digits VAE)", "",
             f"{m['date']}; {m['platform']}; {m['cpu_count']} CPUs; torch {m['torch']}, "
             f"accelerate {m['accelerate']}. Every probe is the real `dgm` command in a "
             "child process; 'data lost' compares hashes of every intact checkpoint's files, "
             "the metrics records up to the newest of them and (unless the probe trains on) "
             "the final weights, taken before the fault, with the folder after it. Peak RSS "
             "is the child's own (wait4).", "",
             "## SIGKILL and resume", "",
             "| kills | inside a checkpoint write | final weights bit-identical to an "
             "uninterrupted run | metrics steps unique and in order |", "|---:|---:|---|---|",
             f"| {k['kills']} | {k['kills_inside_a_checkpoint_write']} | "
             f"{'yes' if k['bit_identical_final_weights'] else 'NO'} | "
             f"{'yes' if k['metrics_steps_unique_and_in_order'] else 'NO'} |", "",
             f"{k['steps']} steps, a checkpoint every {k['checkpoint_every']}; each kill at a "
             "random moment after training began, or the instant a `.partial-*` checkpoint "
             "folder appeared.", "", "## Faults", "",
             "| fault | probe | outcome | one paragraph | data lost | as expected | s | "
             "peak RSS MB |", "|---|---|---|---|---|---|---:|---:|"]
    for r in result["faults"]:
        outcome = (r["message"] or (r["warnings"][0] if r.get("warnings") else "finished")
                   + ("; resumed from its last checkpoint" if r.get("resumed") else ""))
        outcome = outcome.replace("|", "\\|")[:220]
        lines.append(f"| {r['fault']} | {r['probe']} | exit {r['exit_code']}: {outcome} | "
                     f"{'yes' if r.get('one_paragraph') else '-'} | "
                     f"{', '.join(r['data_lost']) or 'none'} | "
                     f"{'yes' if r['as_expected'] else 'NO'} | {r['seconds']} | "
                     f"{r.get('peak_rss_mb') or '-'} |")
    (RESULTS / "faults.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=16)
    parser.add_argument("--kills-in-write", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("faults.py mounts tmpfs file systems and runs a command as nobody: "
                         "run it as root")
    with tempfile.TemporaryDirectory(prefix="dgm-faults-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)
        faults = probes(work)
        sigkill = kills(work, args.kills, args.kills_in_write, args.seed)
        print(f"SIGKILL: {sigkill['kills']} kills, {sigkill['kills_inside_a_checkpoint_write']}"
              f" inside a write, bit-identical: {sigkill['bit_identical_final_weights']}")
        faults += tested(work)
    write_results({"machine": machine(), "sigkill": sigkill, "faults": faults,
                   "settings": {"recipe": "recipes/image/digits-vae.toml", "quick": QUICK,
                                "kill_run": KILL_RUN, "seed": args.seed}})


if __name__ == "__main__":
    main()
