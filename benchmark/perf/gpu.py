"""``benchmark perf --gpu``: the prepared GPU check (MLRC-sized training steps and evaluation on one device).

Training: BN-Inception at 227 px, batch 32, random weights (no download), synthetic uint8 images already on the
host in pinned memory (as the data path delivers them), the mlrc protocol's frozen BatchNorm statistics and
RMSprop. ``FoldTrainer``'s epoch loop against a bare PyTorch loop over the same batches (both convert uint8 to
float on the device), alternating, each per precision (fp32 = mlrc's; bf16 opt-in). Reported: steps/s, images/s,
trainer/bare ratio, peak device memory, and the device's utilisation sampled during the trainer's steps (NVML,
where available). Evaluation: our retrieval metrics at 60k x 128 (~11k classes) with faiss on the GPU against
faiss on the CPU, with equal values.

The same code runs on a CPU (``--device cpu``), at the ``tiny`` sizes the test suite uses: the figures then say
nothing about a GPU, and the JSON says so (``gpu_result_produced``).
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from dataclasses import dataclass, replace

import torch


@dataclass(frozen=True)
class GpuSizes:
    name: str
    crop: int
    batch_size: int
    steps: int
    repeats: int
    eval_n: int
    eval_classes: int
    precisions: tuple[str, ...] = ("fp32", "bf16")


SIZES = {
    "mlrc": GpuSizes("mlrc", crop=227, batch_size=32, steps=50, repeats=3, eval_n=60000, eval_classes=11000),
    # The test suite's: every code path in seconds on a CPU.
    "tiny": GpuSizes("tiny", crop=64, batch_size=8, steps=1, repeats=1, eval_n=2000, eval_classes=300),
}
LOSS = "multi_similarity"
PARAMS = {"alpha": 2.0, "beta": 50.0, "base": 0.5}


def run(device: torch.device, sizes: GpuSizes) -> dict:
    from benchmark.perf.suite import machine

    results = {
        "machine": machine(), "device": str(device), "sizes": sizes.__dict__,
        "gpu_result_produced": device.type == "cuda" and sizes.name == "mlrc",
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    }
    if not results["gpu_result_produced"]:
        results["note"] = ("not a GPU result: run on " + str(device) + " at " + sizes.name + " sizes to exercise the "
                           "code path; the figures say nothing about a GPU")
    results["training"] = {p: _training(device, sizes, p) for p in sizes.precisions}
    results["evaluation"] = _evaluation(device, sizes)
    return results


def _batches(sizes: GpuSizes, device: torch.device, classes: int = 100) -> list:
    generator = torch.Generator().manual_seed(0)
    pin = device.type == "cuda"
    batches = []
    for _ in range(sizes.steps):
        labels = torch.randperm(classes, generator=generator)[: sizes.batch_size // 4].repeat_interleave(4)
        images = torch.randint(0, 256, (sizes.batch_size, 3, sizes.crop, sizes.crop), dtype=torch.uint8,
                               generator=generator)
        batches.append((images.pin_memory() if pin else images, labels))
    return batches


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _training(device: torch.device, sizes: GpuSizes, precision: str) -> dict:
    from pytorch_metric_learning import losses

    from benchmark.config import protocol_for
    from benchmark.data.transforms import to_model_input
    from benchmark.models.precision import autocast, grad_scaler
    from benchmark.training.fold import FoldTrainer

    protocol = replace(protocol_for("mlrc"), crop=sizes.crop, resize=max(sizes.crop, 256),
                       batch_size=sizes.batch_size, precision=precision)
    batches = _batches(sizes, device)
    trainer = FoldTrainer(protocol, LOSS, PARAMS, device, cache=None, weights="none", num_workers=0)
    torch.manual_seed(0)
    model, bundle = trainer.build(100)
    optimizers = trainer.optimizers(model, bundle)
    scaler = trainer.grad_scaler()
    torch.manual_seed(0)
    bare = trainer.build_model()
    optimizer = torch.optim.RMSprop([p for p in bare.parameters() if p.requires_grad], lr=protocol.lr,
                                    weight_decay=protocol.weight_decay, momentum=protocol.momentum)
    loss_fn = losses.MultiSimilarityLoss(**PARAMS)
    bare_scaler = grad_scaler(precision, device)

    def bare_epoch():
        bare.train()
        total = torch.zeros((), device=device)
        for images, labels in batches:
            images = to_model_input(images, device)
            labels = labels.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with autocast(precision, device):
                embeddings = bare(images)
            loss = loss_fn(embeddings.float(), labels)
            bare_scaler.scale(loss).backward()
            bare_scaler.step(optimizer)
            bare_scaler.update()
            total += loss.detach()
        return float(total.item())

    runs = {"trainer": lambda: trainer.run_epoch(model, bundle, optimizers, scaler, batches),
            "bare": bare_epoch}
    for run in runs.values():  # warm-up: cuDNN's algorithm search, allocator growth
        run()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    utilisation: list[float] = []
    for repeat in range(sizes.repeats):
        for name in ("trainer", "bare") if repeat % 2 == 0 else ("bare", "trainer"):
            sampler = _UtilisationSampler(device) if name == "trainer" else None
            _sync(device)
            started = time.perf_counter()
            runs[name]()
            _sync(device)
            seconds[name].append(time.perf_counter() - started)
            if sampler is not None:
                utilisation += sampler.stop()
    per_step = {name: statistics.median(s) / sizes.steps for name, s in seconds.items()}
    return {
        "protocol": "mlrc", "trunk": protocol.trunk, "crop": sizes.crop, "batch_size": sizes.batch_size,
        "precision": precision, "batchnorm": protocol.batchnorm, "steps": sizes.steps, "repeats": sizes.repeats,
        "trainer_steps_per_second": 1 / per_step["trainer"], "bare_steps_per_second": 1 / per_step["bare"],
        "trainer_images_per_second": sizes.batch_size / per_step["trainer"],
        "bare_images_per_second": sizes.batch_size / per_step["bare"],
        "trainer_over_bare_time": statistics.median(t / b for t, b in zip(seconds["trainer"], seconds["bare"])),
        "peak_device_memory_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        "device_utilisation_percent": statistics.mean(utilisation) if utilisation else None,
    }


class _UtilisationSampler:
    """The device's busy percentage (NVML), sampled every 50 ms in a thread; nothing on a CPU or without NVML."""

    def __init__(self, device: torch.device):
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = None
        if device.type != "cuda":
            return
        try:
            torch.cuda.utilization(device)
        except Exception:  # no NVML (pynvml) on this machine: no figure rather than a failed check
            return
        self._thread = threading.Thread(target=self._loop, args=(device,), daemon=True)
        self._thread.start()

    def _loop(self, device) -> None:
        while not self._stop.wait(0.05):
            self.samples.append(float(torch.cuda.utilization(device)))

    def stop(self) -> list[float]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self.samples


def _evaluation(device: torch.device, sizes: GpuSizes) -> dict:
    import faiss

    from benchmark.evaluation import knn
    from benchmark.evaluation.metrics import retrieval_metrics
    from benchmark.perf.metrics_vs_pml import METRICS, embeddings

    x, labels = embeddings(sizes.eval_n, sizes.eval_classes, 128)
    gpu_available = device.type == "cuda" and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    out = {"n": len(labels), "dim": 128, "classes": int(labels.max()) + 1, "faiss_gpu_available": gpu_available}
    timings, values = {}, {}
    sides = ("gpu", "cpu") if gpu_available else ("cpu",)
    for side in sides:
        with knn.cpu_only() if side == "cpu" else contextlib.nullcontext():
            retrieval_metrics(x[:1000], labels[:1000], recall_at=())  # warm-up (GPU resources, threads)
            started = time.perf_counter()
            metrics = retrieval_metrics(x, labels, recall_at=())
            timings[side] = time.perf_counter() - started
            values[side] = {m: metrics[m] for m in METRICS}
    out["seconds"] = timings
    out["metrics"] = values["cpu"]
    if gpu_available:
        out["cpu_over_gpu_time"] = timings["cpu"] / timings["gpu"]
        out["max_abs_metric_diff_gpu_vs_cpu"] = max(abs(values["gpu"][m] - values["cpu"][m]) for m in METRICS)
    return out


def table(results: dict) -> str:
    lines = [f"GPU check on {results['device_name']} ({results['device']}, {results['sizes']['name']} sizes)"]
    if not results["gpu_result_produced"]:
        lines.append(f"note: {results['note']}")
    for precision, r in results["training"].items():
        util = r["device_utilisation_percent"]
        mem = r["peak_device_memory_mib"]
        lines.append(f"{precision}: trainer {r['trainer_steps_per_second']:.2f} steps/s "
                     f"({r['trainer_images_per_second']:.0f} img/s), bare {r['bare_steps_per_second']:.2f} steps/s, "
                     f"trainer/bare time {r['trainer_over_bare_time']:.3f}"
                     + (f", device busy {util:.0f} %" if util is not None else "")
                     + (f", peak {mem:.0f} MiB" if mem is not None else ""))
    e = results["evaluation"]
    lines.append(f"evaluation {e['n']}x{e['dim']}: " + ", ".join(f"{k} {v:.2f} s" for k, v in e["seconds"].items())
                 + (f", CPU/GPU {e['cpu_over_gpu_time']:.1f}x" if "cpu_over_gpu_time" in e else ""))
    return "\n".join(lines)
