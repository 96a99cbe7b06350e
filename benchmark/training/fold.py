"""One fold under the fixed protocol: train on the fold's training classes, validate on its validation classes,
early-stop on validation MAP@R, keep the best checkpoint and the per-epoch curve.

The test classes are never seen here: a fold is built from the train+val classes of the split only.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from benchmark import interrupts
from benchmark.config import Protocol
from benchmark.data.cache import DecodedImageCache
from benchmark.data.images import ImageSet
from benchmark.data.samplers import batch_sampler_space, build_batch_sampler
from benchmark.data.splits import Splits
from benchmark.data.transforms import eval_transform, to_model_input, train_transform
from benchmark.evaluation.embed import compute_embeddings
from benchmark.evaluation.metrics import retrieval_metrics
from benchmark.evaluation.registry import METRICS, OBJECTIVE
from benchmark.evaluation.proxy_diagnostics import proxy_cosine_summary
from benchmark.losses import LossBundle, build_loss
from benchmark.models import build_model
from benchmark.models.precision import autocast, grad_scaler
from benchmark.training.loaders import (default_workers, eval_loader, interrupts_held_while_workers_start,
                                        train_loader)
from benchmark.training.progress import Bar
from benchmark.training.scale_schedules import build_schedule
from benchmark.training.seeding import seed_everything

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class FoldData:
    """The images of one fold. Training labels are remapped to 0..C-1 (proxy/classifier losses need that)."""

    fold: int
    train_paths: list
    train_labels: np.ndarray
    val_paths: list
    val_labels: np.ndarray

    @property
    def num_train_classes(self) -> int:
        return int(self.train_labels.max()) + 1


def fold_data(paths: list, labels: np.ndarray, splits: Splits, fold: int) -> FoldData:
    """Select fold ``fold`` of ``splits`` from a dataset's images; test classes are left out entirely."""
    spec = splits.folds[fold]
    train_classes = np.asarray(sorted(spec.train))
    train_mask = np.isin(labels, train_classes)
    val_mask = np.isin(labels, np.asarray(spec.val))
    return FoldData(
        fold=fold,
        train_paths=[paths[i] for i in np.flatnonzero(train_mask)],
        train_labels=np.searchsorted(train_classes, labels[train_mask]).astype(np.int64),
        val_paths=[paths[i] for i in np.flatnonzero(val_mask)],
        val_labels=labels[val_mask].astype(np.int64),
    )


@dataclass
class FoldResult:
    fold: int
    seed: int
    status: str  # "ok" or "nonfinite_loss"
    # The best validation of the TRAINED model (epochs >= 1): what the objective scores, as powerful-benchmarker's
    # aggregator did (IGNORE_ALL_UNTRAINED) even when it is below the untrained model. Only a fold that never reached
    # a validation (its loss became non-finite first) falls back to the untrained model's epoch 0.
    best_epoch: int
    epochs_trained: int
    untrained_metrics: dict
    best_metrics: dict
    curve: list[dict] = field(default_factory=list)
    proxy_diagnostics: list[dict] = field(default_factory=list)  # {"epoch": e, **proxy_cosine_summary} per validation
    seconds: float = 0.0
    device_seconds: float | None = None  # CUDA time from the fold's first to its last kernel; None on the CPU
    # The checkpoint the test phase embeds with: the best validation INCLUDING the untrained model (PML's
    # HookContainer keeps "best0" until a trained epoch beats it; early stopping counts from this epoch too).
    checkpoint_epoch: int = 0
    state: dict | None = None  # that checkpoint: {"model": ..., "loss": ...} on the CPU


class FoldTrainer:
    """Trains one fold at a time with fixed protocol, loss and hyperparameters.

    ``params`` are already validated and typed by the search space (see ``benchmark.search_space``).
    """

    def __init__(
        self,
        protocol: Protocol,
        loss_name: str,
        params: dict,
        device: torch.device,
        cache: DecodedImageCache,
        weights: str = "none",
        num_workers: int | None = None,
        on_epoch: Callable[[int, dict], None] | None = None,
        compile: bool = False,
        weights_dir: Path | None = None,
    ):
        self.protocol = protocol
        self.loss_name = loss_name
        self.params = dict(params)
        self.device = device
        self.cache = cache
        self.weights = weights
        self.weights_dir = weights_dir
        self.num_workers = num_workers if num_workers is not None else default_workers(device)
        self.on_epoch = on_epoch
        # torch.compile of the model's forward (opt-in: compiling costs a minute or more per fold's first steps and
        # pays on long GPU runs). Checkpoints and metrics are the uncompiled model's, so results stay comparable.
        self.compile = compile
        if device.type == "cuda":
            # Fixed input sizes (crops of one size, batch 32): let cuDNN pick the fastest convolution algorithms.
            torch.backends.cudnn.benchmark = True

    # -- building blocks -------------------------------------------------------------------------------------
    def build_model(self) -> torch.nn.Module:
        model = build_model(self.protocol, weights=self.weights, weights_dir=self.weights_dir).to(self.device)
        if self.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        return model

    def build(self, num_classes: int) -> tuple[torch.nn.Module, LossBundle]:
        model = self.build_model()
        bundle = build_loss(self.loss_name, self.params, num_classes, self.protocol.embedding_size)
        bundle.to(self.device)
        return model, bundle

    def grad_scaler(self) -> torch.amp.GradScaler:
        return grad_scaler(self.protocol.precision, self.device)

    def optimizers(self, model: torch.nn.Module, bundle: LossBundle) -> list[torch.optim.Optimizer]:
        p = self.protocol
        trainable = [q for q in model.parameters() if q.requires_grad]
        optimizers = [torch.optim.RMSprop(trainable, lr=p.lr, weight_decay=p.weight_decay, momentum=p.momentum)]
        # The loss's own parameters (proxies, class weights) get their own RMSprop with the searched lr.
        loss_optimizer = bundle.make_optimizer(p.weight_decay, p.momentum)
        if loss_optimizer is not None:
            optimizers.append(loss_optimizer)
        return optimizers

    def _batch_sampler(self, data: FoldData, seed: int):
        p = self.protocol
        own = batch_sampler_space(p.batch_sampler)  # the trial's params hold the loss's and the sampler's
        return build_batch_sampler(p.batch_sampler, data.train_labels, batch_size=p.batch_size,
                                   m_per_class=p.m_per_class, iterations=p.iterations_per_epoch,
                                   params={k: v for k, v in self.params.items() if k in own}, seed=seed)

    def _train_loader(self, data: FoldData, batches, seed: int) -> DataLoader:
        dataset = ImageSet(data.train_paths, data.train_labels, train_transform(self.protocol), self.cache)
        return train_loader(dataset, batches, self.num_workers, self.device, seed)

    def eval_loader(self, paths: list, labels: np.ndarray):
        """Batches ``(uint8 images, labels)`` of an evaluation set, in order (``loaders.eval_loader``)."""
        dataset = ImageSet(paths, labels, eval_transform(self.protocol), self.cache)
        return eval_loader(dataset, self.protocol.crop, self.num_workers, self.device)

    def validate(self, model: torch.nn.Module, loader: DataLoader) -> dict:
        """P@1, R-Precision and MAP@R of the validation classes. No Recall@K: early stopping and tuning read MAP@R
        only, and Recall@K's large cut-offs (SOP's 1000) would search ~10x the neighbours MAP@R needs (k = the
        largest class size); Recall@K is a test-phase metric."""
        embeddings, labels = compute_embeddings(model, loader, self.device, self.protocol.precision)
        return retrieval_metrics(embeddings, labels, recall_at=())

    def untrained_state(self, seed: int) -> dict:
        """The model ``train(data, seed)`` starts from (seeded the same way, built first), before any step."""
        seed_everything(seed)
        return {"model": _cpu_copy(self.build_model().state_dict())}

    # -- the fold --------------------------------------------------------------------------------------------
    def train(self, data: FoldData, seed: int) -> FoldResult:
        """Normal training with early stopping, then the scale schedule's additional phase if it has one."""
        p = self.protocol
        started = time.perf_counter()
        clock = _DeviceClock(self.device)
        seed_everything(seed)
        model, bundle = self.build(data.num_train_classes)
        forward = torch.compile(model) if self.compile else model  # the same parameters; state_dict from `model`
        schedule = build_schedule(self.params, bundle)
        schedule.start(bundle, data.num_train_classes)
        optimizers = self.optimizers(model, bundle)
        scaler = self.grad_scaler()
        batches = self._batch_sampler(data, seed)
        train_loader = self._train_loader(data, batches, seed)
        val_loader = self.eval_loader(data.val_paths, data.val_labels)
        observers = [lambda embeddings, labels: batches.observe(embeddings)]  # in batch order, as drawn
        if schedule.observes:
            observers.append(lambda embeddings, labels: schedule.observe(bundle, embeddings, labels))
        run = _FoldProgress()

        def epoch_done(epoch: int, loss: float | None, scale: float | None, validate: bool) -> bool:
            """Record an epoch (validating when asked); False when the loss stopped being finite."""
            metrics = None
            if loss is not None and not math.isfinite(loss):
                run.status = "nonfinite_loss"
                logger.warning("fold %d: loss became %s at epoch %d; the fold ends here", data.fold + 1, loss, epoch)
            elif validate:
                metrics = self.validate(forward, val_loader)
                run.consider(epoch, metrics, lambda: _snapshot(model, bundle))
                if bundle.has_proxies:
                    run.diagnostics.append({"epoch": epoch, **proxy_cosine_summary(bundle.class_proxies())})
            run.curve.append(_curve_row(epoch, loss, metrics, optimizers, scale, time.perf_counter() - started))
            self._report(data.fold, run.curve[-1], run.best_metrics, run.best_epoch)
            return run.status == "ok"

        def train_epoch() -> tuple[float, float | None]:
            scale = bundle.get_scale() if bundle.scale_name else None  # the s this epoch trains with
            loss = self.run_epoch(forward, bundle, optimizers, scaler, train_loader, observers)
            return loss, scale

        epoch_done(0, None, bundle.get_scale() if bundle.scale_name else None, validate=True)
        epoch = 0
        bar = Bar("epochs", p.max_epochs, f"fold {data.fold + 1} epochs")
        for epoch in range(1, p.max_epochs + 1):
            loss, scale = train_epoch()
            validated = epoch % p.save_interval == 0
            ok = epoch_done(epoch, loss, scale, validate=validated)
            bar.update(loss=f"{loss:.4g}", best_val_mapr=f"{run.best_metrics['mean_average_precision_at_r']:.4f}")
            if not ok:
                break
            schedule.end_epoch(bundle)
            if validated and plateaued(epoch, run.checkpoint_epoch, p.patience):
                break
        bar.close()
        normal_epochs = epoch
        extra = schedule.extra_epochs(normal_epochs) if run.status == "ok" else 0
        if extra:
            logger.info("fold %d: %d more epochs moving the scale to its end value", data.fold + 1, extra)
        for step in range(1, extra + 1):
            bundle.set_scale(schedule.extra_scale(step, extra))
            epoch = normal_epochs + step
            loss, scale = train_epoch()
            # The phase's last epoch is always validated: it is the model trained at the end value.
            if not epoch_done(epoch, loss, scale, validate=epoch % p.save_interval == 0 or step == extra):
                break

        return FoldResult(
            fold=data.fold,
            seed=seed,
            status=run.status,
            best_epoch=run.best_epoch,
            epochs_trained=epoch,
            untrained_metrics=run.untrained_metrics,
            best_metrics=run.best_metrics,
            curve=run.curve,
            proxy_diagnostics=run.diagnostics,
            seconds=time.perf_counter() - started,
            device_seconds=clock.seconds(),
            checkpoint_epoch=run.checkpoint_epoch,
            state=run.checkpoint_state,
        )

    def run_epoch(self, model, bundle, optimizers, scaler, loader, observers=()) -> float:
        """One epoch of optimisation steps over ``loader``; the mean loss."""
        model.train()
        # Summed on the device and read once per epoch: a per-step .item() would stall a GPU at every step.
        total = torch.zeros((), device=self.device)
        steps = 0
        with interrupts_held_while_workers_start():
            batches = iter(loader)
        for images, labels in batches:
            interrupts.raise_if_requested()  # one that a finaliser swallowed (benchmark.interrupts)
            images = to_model_input(images, self.device)
            labels = labels.to(self.device, non_blocking=True)
            if self.device.type == "cuda":
                images = images.contiguous(memory_format=torch.channels_last)
            for optimizer in optimizers:
                optimizer.zero_grad(set_to_none=True)
            with autocast(self.protocol.precision, self.device):
                embeddings = model(images)
            loss = bundle.compute(embeddings, labels)
            scaler.scale(loss).backward()
            for optimizer in optimizers:
                scaler.step(optimizer)
            scaler.update()
            total += loss.detach()
            steps += 1
            for observe in observers:
                observe(embeddings.detach(), labels)
        return float(total.item()) / max(steps, 1)

    def _report(self, fold: int, row: dict, best: dict, best_epoch: int) -> None:
        if row[f"val_{OBJECTIVE}"] is not None:
            logger.info(
                "fold %d epoch %d: loss %s, val MAP@R %.4f (best %.4f at epoch %d)",
                fold + 1, row["epoch"], "-" if row["loss"] is None else f"{row['loss']:.4f}",
                row[f"val_{OBJECTIVE}"], best[OBJECTIVE], best_epoch,
            )
        else:
            logger.debug("fold %d epoch %d: loss %.4f", fold + 1, row["epoch"], row["loss"])
        if self.on_epoch is not None:
            self.on_epoch(fold, row)


@dataclass
class _FoldProgress:
    """What one fold has reached so far: the best validation and its checkpoint, the curve, the diagnostics."""

    status: str = "ok"
    best_epoch: int = 0  # best trained validation (see FoldResult)
    best_metrics: dict | None = None
    checkpoint_epoch: int = 0  # best validation, the untrained model included
    checkpoint_metrics: dict | None = None
    checkpoint_state: dict | None = None
    untrained_metrics: dict | None = None
    curve: list[dict] = field(default_factory=list)
    diagnostics: list[dict] = field(default_factory=list)

    def consider(self, epoch: int, metrics: dict, snapshot: Callable[[], dict]) -> None:
        """Record a validation; epoch 0 is the untrained model. A tie keeps the earlier epoch (PML's strict >)."""
        value = metrics[OBJECTIVE]
        if epoch == 0:
            self.untrained_metrics = metrics
            self.best_metrics = metrics  # until a trained validation exists
        elif self.best_epoch == 0 or value > self.best_metrics[OBJECTIVE]:
            self.best_metrics, self.best_epoch = metrics, epoch
        if self.checkpoint_metrics is None or value > self.checkpoint_metrics[OBJECTIVE]:
            self.checkpoint_metrics, self.checkpoint_epoch, self.checkpoint_state = metrics, epoch, snapshot()


def plateaued(epoch: int, best_epoch: int, patience: int) -> bool:
    """Early stopping as pytorch-metric-learning's HookContainer decides it (``patience_remaining``), which
    powerful-benchmarker used for MLRC: asked after a validation only, stop once MORE than ``patience`` epochs
    separate it from the best one (epoch 0, the untrained model, counts as a validation)."""
    return epoch - best_epoch > patience


class _DeviceClock:
    """CUDA events around a fold: the device's own elapsed time, which a wall clock cannot tell apart from time the
    GPU waited for data. Nothing on the CPU."""

    def __init__(self, device: torch.device):
        self.start = None
        if device.type == "cuda":
            self.start = torch.cuda.Event(enable_timing=True)
            self.start.record(torch.cuda.current_stream(device))
            self.device = device

    def seconds(self) -> float | None:
        if self.start is None:
            return None
        end = torch.cuda.Event(enable_timing=True)
        end.record(torch.cuda.current_stream(self.device))
        end.synchronize()
        return self.start.elapsed_time(end) / 1000.0


def _snapshot(model: torch.nn.Module, bundle: LossBundle) -> dict:
    return {"model": _cpu_copy(model.state_dict()), "loss": _cpu_copy(bundle.state_dict())}


def _cpu_copy(state: dict) -> dict:
    return {k: v.detach().to("cpu", copy=True) if torch.is_tensor(v) else copy.deepcopy(v) for k, v in state.items()}


def _curve_row(epoch, loss, metrics, optimizers, scale, seconds) -> dict:
    lrs = {name: optimizer.param_groups[0]["lr"] for name, optimizer in zip(("model", "loss"), optimizers)}
    metrics = metrics or {}
    return {
        "epoch": epoch,
        "loss": loss,
        **{f"val_{key}": metrics.get(key) for key in METRICS},
        "lrs": lrs,
        "scale": scale,
        "seconds": seconds,
    }
