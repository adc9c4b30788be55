"""The training loop, on HF accelerate. It receives a family and a data set; it builds
neither. Resume is automatic: the newest complete checkpoint in the run folder is loaded
(weights, optimizer, learning-rate schedule, EMA, RNG streams, step and data position)."""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from safetensors import safe_open
from safetensors.torch import save_file, save_model
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from dgm.capabilities import declared
from dgm.contract import DataSource, Family, as_batch
from dgm.errors import RecipeError, RecipeWarning, RunDirError, TrainingError
from dgm.recipes import DataConfig, TrainConfig
from dgm.runs import RunDir

TRAIN_STATE_FILE = "train_state.json"
EMA_FILE = "ema.safetensors"
LOGS_DIR = "logs"
TRACKER_PACKAGES = {"tensorboard": '"dgm-core[tensorboard]"', "comet_ml": "comet-ml"}
"""What to pip install for a tracker, where it is not the tracker's own name."""


class TrainState:
    """Counters saved inside every checkpoint."""

    def __init__(self) -> None:
        self.step = 0
        self.batches = 0

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step, "batches": self.batches}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step = int(state["step"])
        self.batches = int(state["batches"])


SKIPS_IN_A_ROW = 20
"""With ``train.on_nan = "skip"``, how many non-finite batches in a row are skipped
before the run stops: past that the weights are almost surely not finite any more."""


PROGRESS_LINE_SECONDS = 30.0
"""Into a log that is not a terminal, progress is a plain line at most this often."""


class ProgressLines:
    """tqdm's ``update``/``set_postfix``/``close`` as plain lines on stderr, for logs: a
    bar's carriage-return redraws would fill a log file with megabytes of updates."""

    def __init__(self, total: int, initial: int, name: str,
                 every: float = PROGRESS_LINE_SECONDS) -> None:
        self.total, self.n, self.name, self.every = total, initial, name, every
        self.postfix = ""
        self.last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self.last >= self.every:
            self._line()

    def set_postfix(self, **values: str) -> None:
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())

    def close(self) -> None:
        self._line()

    def _line(self) -> None:
        self.last = time.monotonic()
        extra = f", {self.postfix}" if self.postfix else ""
        print(f"{self.name}: step {self.n}/{self.total}{extra}", file=sys.stderr, flush=True)


def progress_bar(total: int, initial: int, name: str, enabled: bool) -> Any:
    """A tqdm bar on a terminal, :class:`ProgressLines` into a log, nothing when
    ``train.progress`` is false (or on processes other than the main one)."""
    if enabled and not sys.stderr.isatty():
        return ProgressLines(total, initial, name)
    return tqdm(total=total, initial=initial, disable=not enabled, desc=name, unit="step",
                dynamic_ncols=True)


@dataclass
class TrainResult:
    steps: int
    resumed_from: int
    seconds: float
    last_loss: float


def check_trackers(names: list[str]) -> None:
    """Refuse a ``train.log_with`` name accelerate does not know, or whose package is not
    installed, before anything is built."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS, get_available_trackers

    available = {str(getattr(t, "value", t)) for t in get_available_trackers()}
    for name in names:
        if name not in LOGGER_TYPE_TO_CLASS:
            raise RecipeError(f"train.log_with: {name!r} is not a tracker accelerate knows; "
                              f"choose from {', '.join(sorted(LOGGER_TYPE_TO_CLASS))}")
        if name not in available:
            raise RecipeError(f"train.log_with: the {name} tracker needs its package, which "
                              f"is not installed here: pip install "
                              f"{TRACKER_PACKAGES.get(name, name)}")


def make_accelerator(config: TrainConfig, seed: int, run_path: Path | None = None,
                     ) -> Accelerator:
    """The accelerator a run uses: seeded data order, accumulation, mixed precision, and
    the trackers of ``train.log_with`` writing under ``run_path/logs``. Started by
    torchrun (or ``accelerate launch``) on a machine without CUDA, processes train
    together over gloo: accelerate only forms a CPU process group when told to."""
    multi_cpu = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    trackers: dict[str, Any] = {}
    if config.log_with:
        check_trackers(config.log_with)
        where = Path(run_path or ".")
        trackers = {"log_with": list(config.log_with), "project_config": ProjectConfiguration(
            project_dir=str(where), logging_dir=str(where / LOGS_DIR))}
    try:
        accelerator = Accelerator(
            cpu=multi_cpu,
            gradient_accumulation_steps=config.grad_accum,
            mixed_precision=config.mixed_precision,
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True,
                                                      data_seed=seed),
            dynamo_backend="inductor" if config.compile else None,
            **trackers,
        )
    except ValueError as exc:
        raise TrainingError(f"train.mixed_precision = {config.mixed_precision!r} cannot be "
                            f"used here: {exc}") from None
    if config.mixed_precision == "fp16" and accelerator.scaler is None:
        warnings.warn(
            f"train.mixed_precision = 'fp16' needs a GPU (loss scaling runs there only); on "
            f"{accelerator.device.type} this run trains in fp32. Use 'bf16' for mixed "
            "precision on CPU.", RecipeWarning, stacklevel=2)
    return accelerator


def enable_gradient_checkpointing(family: nn.Module) -> int:
    """Turn on gradient checkpointing in every network of ``family`` that declares the
    capability; how many did. None that can is a :class:`RecipeError`."""
    able = [m for m in family.modules() if "gradient-checkpointing" in declared(m)]
    if not able:
        networks = sorted({type(m).__name__ for m in family.children()})
        raise RecipeError("train.gradient_checkpointing = true, but none of this family's "
                          f"networks ({', '.join(networks) or 'none'}) can: a network "
                          "declares the capability 'gradient-checkpointing' (core:unet2d "
                          "does); set it to false")
    for module in able:
        module.enable_gradient_checkpointing()
    return len(able)


def make_optimizer(groups: Any, config: TrainConfig) -> torch.optim.Optimizer:
    """``train.optimizer`` over the family's parameter groups: AdamW or Adam with
    ``train.betas``, or SGD with ``train.momentum``; ``train.weight_decay`` for each."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    if len(config.betas) != 2 or not all(0 <= b < 1 for b in config.betas):
        raise RecipeError(f"train.betas must be two numbers in [0, 1) (the decay rates of "
                          f"the gradient's mean and square), got {config.betas!r}")
    optimizer = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return optimizer(groups, lr=config.lr, betas=tuple(config.betas),
                     weight_decay=config.weight_decay)


def make_lr_schedule(optimizer: torch.optim.Optimizer, config: TrainConfig) -> Any:
    """diffusers' schedule ``train.lr_schedule`` on ``optimizer``: ``warmup_steps`` of
    linear warm-up, then constant or decaying to 0 over ``lr_schedule_steps`` (default
    ``steps``). Stepped once per optimizer step; its state is saved in every checkpoint."""
    from diffusers.optimization import get_scheduler

    span = config.lr_schedule_steps or config.steps
    if config.warmup_steps and config.lr_schedule == "constant":
        raise RecipeError(f"train.warmup_steps = {config.warmup_steps} has no effect with "
                          "train.lr_schedule = 'constant': use 'constant_with_warmup' (or "
                          "a decaying schedule), or set warmup_steps = 0")
    if config.lr_schedule not in ("constant", "constant_with_warmup") \
            and config.warmup_steps >= span:
        raise RecipeError(f"train.warmup_steps = {config.warmup_steps} leaves no steps to "
                          f"decay over: the schedule spans {span} steps "
                          "(train.lr_schedule_steps, or train.steps when that is 0)")
    return get_scheduler(config.lr_schedule, optimizer, num_warmup_steps=config.warmup_steps,
                         num_training_steps=span)


PICKLED_SUFFIXES = (".bin", ".pkl", ".pt", ".pth")


def _unpickling_reason(exc: Exception) -> str:
    """What was wrong with a pickled file, without PyTorch's advice to load it unsafely."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if line.startswith("WeightsUnpickler error:"):
            reason = line.removeprefix("WeightsUnpickler error:").strip()
            return reason.split(". ")[0].rstrip(".")  # not PyTorch's advice on allowing it
    safe = [line for line in lines if "weights_only" not in line and "Weights only" not in line]
    return safe[0].rstrip(".") if safe else type(exc).__name__


def check_pickles_load_safely(checkpoint: Path) -> None:
    """Refuse a checkpoint whose pickled files (optimizer, RNG streams) need more than
    tensors and plain data to load, i.e. could run code; accelerate would skip a bad RNG
    file with a warning and resume with the wrong random streams."""
    from accelerate.utils import load as safe_load  # torch.load(weights_only=True)

    for path in sorted(Path(checkpoint).iterdir()):
        if path.suffix not in PICKLED_SUFFIXES:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                safe_load(path, map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - any failure means: do not resume from it
            raise RunDirError(
                f"checkpoint {checkpoint.name} refused: {path.name} does not load as plain "
                f"tensors and data: {_unpickling_reason(exc)}. Nothing in it was executed "
                f"or changed; it was not loaded. Delete {str(checkpoint)!r} to resume from "
                "an earlier checkpoint, or start a new run") from None


def checkpoint_damage(checkpoint: Path) -> str | None:
    """Why ``checkpoint`` cannot be resumed from (a missing or unreadable file), or None
    when every file it needs is there and readable. Cheap: reads headers, not tensors."""
    state_file = checkpoint / TRAIN_STATE_FILE
    if not state_file.is_file():
        return f"it has no {TRAIN_STATE_FILE}"
    try:
        state = json.loads(state_file.read_text())
        TrainState().load_state_dict(state)
    except (ValueError, KeyError, TypeError) as exc:
        return f"its {TRAIN_STATE_FILE} is not a step counter ({type(exc).__name__}: {exc})"
    weights = sorted(checkpoint.glob("*.safetensors")) + sorted(checkpoint.glob("*.bin"))
    if not any(p.name.startswith("model") for p in weights):
        return "it holds no model weights"
    for path in checkpoint.glob("*.safetensors"):
        try:
            with safe_open(str(path), "pt") as f:
                f.keys()
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
            return f"{path.name} is not a readable safetensors file ({exc})"
    return None


DAMAGED_PREFIX = ".damaged-"


def give_usual_mode(path: Path) -> None:
    """The permissions a file created with ``open`` gets (0o666 less the umask):
    safetensors creates its files readable by their owner alone, so nobody else could
    sample from a run someone shared with them."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1].strip() if text else type(exc).__name__


def non_finite_where(losses: list[float]) -> str:
    """The non-finite loss, and with several processes which of them saw it: ``nan``,
    ``nan on process 1 of 2``, ``nan on processes 0 and 2, inf on process 3 of 4``."""
    if len(losses) == 1:
        return str(losses[0])
    ranks: dict[str, list[int]] = {}
    for rank, value in enumerate(losses):
        if not math.isfinite(value):
            ranks.setdefault(str(value), []).append(rank)
    parts = []
    for value, seen in ranks.items():
        names = " and ".join(filter(None, [", ".join(map(str, seen[:-1])), str(seen[-1])]))
        parts.append(f"{value} on process{'es' if len(seen) > 1 else ''} {names}")
    return f"{', '.join(parts)} of {len(losses)}"


class Trainer:
    """Fits ``family`` on ``data`` for ``config.steps`` optimizer steps."""

    def __init__(self, family: Family, data: DataSource, run: RunDir, config: TrainConfig,
                 data_config: DataConfig, seed: int = 0,
                 accelerator: Accelerator | None = None) -> None:
        self.config = config
        self.run = run
        self.seed = seed
        self.accelerator = accelerator or make_accelerator(config, seed, run.path)
        # Each process draws its own training noise (seed + process index; one process
        # keeps ``seed``). The weights stay identical: prepare() broadcasts rank 0's.
        set_seed(seed, device_specific=True)
        if len(data) < data_config.batch_size:
            raise TrainingError(f"data set has {len(data)} examples, fewer than one batch "
                                f"(data.batch_size = {data_config.batch_size})")
        # The loader's own generator keeps iterator creation from drawing on the global
        # RNG, so a resumed run's model RNG stream matches an uninterrupted one.
        workers = data_config.num_workers
        loader = DataLoader(data, batch_size=data_config.batch_size, shuffle=True,
                            drop_last=True, num_workers=workers,
                            pin_memory=torch.cuda.is_available(),
                            persistent_workers=workers > 0,
                            generator=torch.Generator().manual_seed(seed))
        if config.gradient_checkpointing:
            enable_gradient_checkpointing(family)
        if config.channels_last:
            family.to(memory_format=torch.channels_last)
        optimizer = make_optimizer(family.optimizer_groups(config.lr), config)
        self.model, self.optimizer, self.loader = self.accelerator.prepare(
            family, optimizer, loader)
        self.lr_schedule = make_lr_schedule(self.optimizer.optimizer, config)
        # The step counter and EMA are saved as JSON and safetensors beside accelerate's
        # state, not through register_for_checkpointing, which unpickles on load.
        self.state = TrainState()
        self.ema = None
        if config.ema:
            from diffusers.training_utils import EMAModel

            self.ema = EMAModel(self.accelerator.unwrap_model(self.model).parameters(),
                                decay=config.ema_decay)
            self.ema.to(self.accelerator.device)

    @property
    def family(self) -> Family:
        return self.accelerator.unwrap_model(self.model, keep_torch_compile=False)

    def fit(self) -> TrainResult:
        acc, cfg, state = self.accelerator, self.config, self.state
        self.skipped_in_a_row = 0
        latest = self._intact_checkpoint()
        if latest is not None:
            check_pickles_load_safely(latest)
            acc.load_state(str(latest))
            self._load_extra_state(latest)
        if acc.is_main_process:  # steps after the checkpoint (all, without one) run again
            self.run.truncate_metrics(state.step)
        if cfg.log_with:  # TensorBoard hides what it logged after the checkpoint
            acc.init_trackers(self.run.path.name, config=self.tracked_settings,
                              init_kwargs={"tensorboard": {"purge_step": state.step + 1}})
        try:
            return self._train()
        finally:
            if cfg.log_with:
                acc.end_training()

    @property
    def tracked_settings(self) -> dict[str, Any]:
        """The ``[train]`` settings, as trackers record them beside the metrics."""
        return {f"train.{key}": value if isinstance(value, int | float | str | bool)
                else str(value) for key, value in asdict(self.config).items()}

    def _train(self) -> TrainResult:
        """The loop, from the state ``fit`` loaded."""
        acc, cfg, state = self.accelerator, self.config, self.state
        resumed_from = state.step
        per_epoch = len(self.loader)
        bar = progress_bar(cfg.steps, state.step, self.run.path.name,
                           cfg.progress and acc.is_main_process)
        start = time.perf_counter()
        window_start, window_steps = start, 0
        loss_sum = torch.zeros((), device=acc.device)
        logs_sum: dict[str, torch.Tensor] = {}
        last_loss = math.nan
        self.model.train()
        while state.step < cfg.steps:
            epoch, offset = divmod(state.batches, per_epoch)
            batches = acc.skip_first_batches(self.loader, offset) if offset else self.loader
            batches.set_epoch(epoch)  # accelerate seeds the shuffle with data_seed + epoch
            for batch in batches:
                batch = as_batch(batch)
                with acc.accumulate(self.model):
                    with acc.autocast():
                        loss, logs = self.model(batch)
                    losses = self._losses_if_non_finite(loss)
                    if losses is not None:
                        self._non_finite(losses)
                        self.optimizer.zero_grad()
                        state.batches += 1
                        continue
                    self.skipped_in_a_row = 0
                    acc.backward(loss)
                    if acc.sync_gradients and cfg.max_grad_norm > 0:
                        acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                    self.optimizer.step()
                    if acc.sync_gradients and not self.optimizer.step_was_skipped:
                        self.lr_schedule.step()
                    self.optimizer.zero_grad()
                state.batches += 1
                loss_sum += loss.detach()
                for key, value in logs.items():
                    logs_sum[key] = logs_sum.get(key, 0.0) + value.detach().float()
                if not acc.sync_gradients:
                    continue
                state.step += 1
                window_steps += 1
                if self.ema is not None:
                    self.ema.step(self.family.parameters())
                bar.update(1)
                if state.step % cfg.log_every == 0 or state.step == cfg.steps:
                    last_loss = self._log(loss_sum, logs_sum, window_steps, window_start, bar)
                    loss_sum.zero_()
                    logs_sum = {}
                    window_start, window_steps = time.perf_counter(), 0
                if state.step % cfg.checkpoint_every == 0 or state.step == cfg.steps:
                    self.save_checkpoint()
                if state.step >= cfg.steps:
                    break
        bar.close()
        acc.wait_for_everyone()
        return TrainResult(state.step, resumed_from, time.perf_counter() - start, last_loss)

    def _intact_checkpoint(self) -> Path | None:
        """The newest checkpoint that can be resumed from. A damaged one (a file missing
        or unreadable: a disk error, a copy cut short, a hand edit) is set aside as
        ``.damaged-step-N`` (kept, never deleted) with a warning, and the one before it
        is used."""
        acc = self.accelerator
        for checkpoint in reversed(self.run.complete_checkpoints()):
            damage = checkpoint_damage(checkpoint)
            if damage is None:
                return checkpoint
            aside = checkpoint.with_name(DAMAGED_PREFIX + checkpoint.name)
            acc.wait_for_everyone()
            if acc.is_main_process:
                if aside.exists():
                    shutil.rmtree(aside)
                os.replace(checkpoint, aside)
                earlier = [c for c in self.run.complete_checkpoints() if c < checkpoint]
                warnings.warn(
                    f"checkpoint {str(checkpoint)!r} is damaged ({damage}); set aside as "
                    f"{aside.name} and not used. Resuming from "
                    f"{earlier[-1].name if earlier else 'the start (no earlier checkpoint)'}",
                    RecipeWarning, stacklevel=2)
            acc.wait_for_everyone()
        return None

    def _log(self, loss_sum: torch.Tensor, logs_sum: dict[str, torch.Tensor],
             steps: int, since: float, bar: Any) -> float:
        acc = self.accelerator
        micro = steps * self.config.grad_accum
        loss = acc.reduce(loss_sum, reduction="mean").item() / max(micro, 1)
        elapsed = time.perf_counter() - since
        # the steps the mean covers: after a resume between two records, fewer than log_every
        record = {"step": self.state.step, "loss": loss, "window_steps": steps}
        for key, value in logs_sum.items():
            record[key] = acc.reduce(torch.as_tensor(value, device=acc.device),
                                     reduction="mean").item() / max(micro, 1)
        record["lr"] = self.optimizer.param_groups[0]["lr"]
        batch = self.loader.total_batch_size
        record["samples_per_sec"] = micro * batch / elapsed if elapsed > 0 else 0.0
        record["time"] = time.time()
        if acc.is_main_process:
            self.run.append_metrics(record)
            if self.config.log_with:
                acc.log({k: v for k, v in record.items() if k not in ("step", "time")},
                        step=self.state.step)
            bar.set_postfix(loss=f"{loss:.3f}", samples_s=f"{record['samples_per_sec']:.0f}")
        return loss

    def _losses_if_non_finite(self, loss: torch.Tensor) -> list[float] | None:
        """Every process's loss when any process's is not finite, else None. Processes
        decide together, so all skip the batch (or all stop) and none is left waiting in
        the gradient all-reduce; one process gathers nothing."""
        acc = self.accelerator
        if acc.num_processes == 1:
            return None if torch.isfinite(loss) else [loss.item()]
        losses = acc.gather(loss.detach().float().reshape(1))
        return None if torch.isfinite(losses).all() else losses.tolist()

    def _non_finite(self, losses: list[float]) -> None:
        """Skip the batch or stop, the same way and with the same words on every
        process: ``losses`` holds every process's loss."""
        step = self.state.step + 1
        latest = self.run.latest_checkpoint()
        where = non_finite_where(losses)
        if self.config.on_nan == "skip":
            self.skipped_in_a_row += 1
            if self.skipped_in_a_row <= SKIPS_IN_A_ROW:
                if self.accelerator.is_main_process:
                    self.run.append_metrics({"step": step, "skipped": "non-finite loss"})
                return
            last = f" (the last: {where})" if len(losses) > 1 else ""
            raise TrainingError(
                f"the loss was non-finite on {SKIPS_IN_A_ROW + 1} batches in a row at step "
                f"{step}{last} (train.on_nan = \"skip\"), so the weights themselves are "
                f"likely no longer finite; stopped, and nothing was saved from these steps. "
                f"The last good checkpoint, {latest or 'none (none was written yet)'}, is "
                "where the same command resumes: set train.max_grad_norm (it may change on "
                "an existing run folder), or start a new run with a lower train.lr")
        raise TrainingError(
            f"loss became {where} at step {step}; nothing was saved from this step. "
            f"Last good checkpoint: {latest or 'none'}. Lower train.lr, set "
            "train.max_grad_norm, or set train.on_nan = \"skip\""
        )

    def save_checkpoint(self) -> None:
        """Write the full training state atomically: into a hidden folder, then renamed."""
        acc = self.accelerator
        final = self.run.checkpoint_path(self.state.step)
        partial = final.parent / f".partial-{final.name}"
        if acc.is_main_process:
            shutil.rmtree(partial, ignore_errors=True)
            final.parent.mkdir(parents=True, exist_ok=True)
        acc.wait_for_everyone()
        try:
            acc.save_state(str(partial))
            acc.wait_for_everyone()
            if acc.is_main_process:
                self._save_extra_state(partial)
                for written in partial.glob("*.safetensors"):
                    give_usual_mode(written)
                if final.exists():
                    shutil.rmtree(final)
                os.replace(partial, final)
        except Exception as exc:  # noqa: BLE001 - torch.save reports a full disk as RuntimeError
            if acc.is_main_process:
                shutil.rmtree(partial, ignore_errors=True)
            raise TrainingError(self._write_failed(final, exc)) from exc
        if acc.is_main_process:
            self.run.prune_checkpoints(self.config.keep_checkpoints)
        acc.wait_for_everyone()

    def _write_failed(self, final: Path, exc: Exception) -> str:
        """One paragraph for a checkpoint that could not be written (a full disk, a
        folder made read-only), saying that what was saved before is intact."""
        reason = (exc.strerror if isinstance(exc, OSError) and exc.strerror
                  else _first_line(exc))
        done = self.run.complete_checkpoints()
        try:
            free = shutil.disk_usage(final.parent).free
            space = f"; {free / 1e6:,.1f} MB are free on that disk"
            needs = sum(p.stat().st_size for p in done[-1].iterdir()) if done else 0
            if free < needs and not isinstance(exc, OSError):
                reason = f"the disk is full ({reason})"
                space += f", a checkpoint takes {needs / 1e6:,.1f} MB"
        except OSError:
            space = ""
        return (f"could not write checkpoint {final.name} into {str(final.parent)!r}: "
                f"{reason}{space}. Nothing already saved was lost: the half-written "
                f"checkpoint was removed, and the last complete one, "
                f"{done[-1].name if done else 'none yet'}, is where the same command "
                "resumes. Free space (or make the folder writable) and run it again")

    def _save_extra_state(self, folder: Path) -> None:
        state = {**self.state.state_dict(), "lr_schedule": self.lr_schedule.state_dict()}
        (folder / TRAIN_STATE_FILE).write_text(json.dumps(state))
        if self.ema is not None:
            state = self.ema.state_dict()
            shadow = state.pop("shadow_params")
            save_file({str(i): t.detach().contiguous().cpu() for i, t in enumerate(shadow)},
                      str(folder / EMA_FILE), metadata={"state": json.dumps(state)})

    def _load_extra_state(self, folder: Path) -> None:
        state = json.loads((folder / TRAIN_STATE_FILE).read_text())
        self.state.load_state_dict(state)
        if "lr_schedule" in state:  # checkpoints from before 0.2 hold none: constant
            self.lr_schedule.load_state_dict(state["lr_schedule"])
        if self.ema is not None:
            with safe_open(str(folder / EMA_FILE), "pt") as f:
                state = json.loads(f.metadata()["state"])
                shadow = [f.get_tensor(str(i)) for i in range(len(f.keys()))]
            device = self.accelerator.device
            self.ema.load_state_dict({**state, "shadow_params": shadow})
            self.ema.to(device)

    def save_weights(self) -> None:
        """Final weights for sampling (the EMA weights when EMA is on), as safetensors."""
        acc = self.accelerator
        if not acc.is_main_process:
            return
        family = self.family
        self.run.model_dir.mkdir(parents=True, exist_ok=True)
        if self.ema is not None:
            backup = [p.detach().clone() for p in family.parameters()]
            self.ema.copy_to(family.parameters())
        tmp = self.run.weights_file.with_suffix(".tmp")
        try:
            save_model(family, str(tmp))
            give_usual_mode(tmp)
            os.replace(tmp, self.run.weights_file)
        except Exception as exc:  # noqa: BLE001 - safetensors reports write errors its way
            tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise
            raise TrainingError(f"could not write the final weights "
                                f"{str(self.run.weights_file)!r}: {_first_line(exc)}. The "
                                "checkpoints are intact: free space and run the same command "
                                "again to write them") from exc
        if self.ema is not None:
            for p, saved in zip(family.parameters(), backup):
                p.data.copy_(saved)
