"""Training and analysis throughput: the usual torchvision way vs prunelens.

Run from the repository root:

    python benchmarks/bench_train.py --device cpu --quick
    python benchmarks/bench_train.py --device cuda [--out DIR] [--budget-s 270]
    python benchmarks/bench_train.py --report   # only rebuild BENCHMARKS.md

Measures, on random CIFAR-sized uint8 data with WRN-16-2 (timing does not
depend on the pixels):

* Sup and SCL training steps (forward, backward, SGD step, augmentation and
  batch assembly included) in images/s (image-views/s for SCL):
  (a) baseline, written the usual way: torchvision's per-image PIL transforms
  in a DataLoader, float32, contiguous, one model; (b) the project path: the
  uint8 set on the device, batched ``prunelens.augment`` ops and
  ``prunelens.train``'s batch-loss code (channels_last), one model; (c) K
  models stacked (``prunelens.stacked``), aggregate and per model; (d) on
  CUDA each speed switch of the stack (bf16 autocast, channels_last,
  torch.compile, cudnn.benchmark) and the best combination;
* the augmentation alone, per batch (baseline per image vs batched);
* the analysis path at paper size: the 16 probe activations of 60,000 images
  and the k-NN (``prunelens.depth.probe_predictions``, k = 30) of 50,000 x
  10,000 points at the 16 probe widths. ``--quick`` on CPU times a fraction
  and extrapolates (marked in the output);
* the peak RSS of a quick-scale job: ``prunelens.train.train_supervised`` on
  a 1,000-image prepared file for one epoch, in a subprocess;
* ``--only logging``: the wall time of a quick-scale-like training job
  (``train_supervised``, 1,000 images, WRN-16-2, batch 128, 2 epochs: 16
  steps) with its training curves logged as the quick scale does (a row
  every 2 steps, TensorBoard and CSV, progress lines) and without (no step
  rows, no TensorBoard, no CSV), the two interleaved, the ratio of medians.

Results go to ``benchmarks/results/<device>-<date>.json`` (or ``--out``), and
BENCHMARKS.md is rebuilt from every result file present (newest per device),
with the targets and the paper grid's projected GPU-hours. Baselines run
first: the project's training jobs keep glibc's freed memory
(``runtime.keep_freed_memory``, process-wide), which would otherwise speed
the baseline up too. Without torchvision the baseline is a per-image loop of
the prunelens ops at batch size 1, labelled so.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

REPO = Path(__file__).resolve().parents[1]
try:
    import prunelens  # noqa: F401
except ImportError:  # not installed: use the checkout this script lives in
    sys.path.insert(0, str(REPO / "src"))

from prunelens import augment  # noqa: E402
from prunelens.depth import probe_activations, probe_predictions  # noqa: E402
from prunelens.evaluate import predict  # noqa: E402
from prunelens.losses import supcon_loss  # noqa: E402
from prunelens.models import (  # noqa: E402
    SupConNetwork,
    build_classifier,
    build_encoder,
)
from prunelens.runtime import keep_freed_memory  # noqa: E402
from prunelens.stacked import StackedClassifier  # noqa: E402
from prunelens.train import (  # noqa: E402
    Normalisation,
    _ce,
    _crop_flip,
    _supcon,
    _two_views,
    batch_inputs,
)

try:  # any failure (missing, or built for another CUDA) means: no torchvision
    from PIL import Image
    from torchvision import __version__ as TORCHVISION
    from torchvision import transforms as T
except Exception:  # noqa: BLE001
    TORCHVISION = None

RESULTS = REPO / "benchmarks" / "results"
REPORT = REPO / "BENCHMARKS.md"

# The paper-scale values of config.yaml, as constants so that this script
# needs no YAML parser on a bare GPU machine.
NORM = Normalisation((0.4915, 0.4823, 0.4468), (0.2047, 0.2435, 0.2616))
SUP_AUG = {"padding": 4, "hflip": True, "vflip": True}
SCL_HP = {
    "temperature": 0.5,
    "base_temperature": 0.07,
    "augment": {
        "scale": (0.2, 1.0),
        "jitter": (0.4, 0.4, 0.4, 0.1),
        "p_jitter": 0.8,
        "p_gray": 0.2,
    },
}
SUP_BATCH, SCL_BATCH = 128, 1024
# The optimiser's values do not change the cost of a step; a small lr keeps
# random-label training finite.
SGD = {"lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4}
ARCH = {"depth": 16, "width": 2}
# --only arch: the model.arch choices, timed side by side
ARCH_CASES = {"WRN-16-2": ARCH, "ResNet-18": {"name": "resnet18"}}
ARCH_BATCH = 64  # same for both; small, so the CPU run stays under 3 minutes
N_EMBED, N_KNN_TRAIN, N_KNN_TEST, KNN_K = 60_000, 50_000, 10_000, 30

# Targets printed beside the measurements (the project's brief).
TARGET_CPU_SUP = 1.5  # CPU project / baseline, Sup training
TARGET_CPU_SCL_AUG = 2.0  # CPU project / baseline, SCL two-view augmentation
TARGET_GPU_AGG = 200_000.0  # img/s across K stacked seeds
TARGET_GPU_VS_ONE = 3.0  # aggregate / one model (project path)
TARGET_GPU_HOURS = 24.0  # the paper grid
TARGET_RSS_GIB = 2.0  # quick-scale training job


# ----------------------------------------------------------------- timing


@dataclass
class Case:
    """One timed configuration: ``make`` builds its step (data, model)."""

    row: dict[str, Any]
    make: Callable[[], Callable[[], int]]
    warmup: int
    per: int = 1  # models in the step: the rate per model is value / per
    rewarm: int = 0  # untimed steps before each segment


class Bench:
    """Runs measurements, keeps the rows and saves them after each one."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.dev = torch.device(args.device)
        self.cuda = self.dev.type == "cuda"
        self.quick = args.quick
        # Timed seconds per round; a case's rate is its median over rounds.
        self.seconds = 1.0 if (self.quick or self.cuda) else 3.0
        # More rounds on a CPU shared with other jobs, whose load comes and goes.
        self.rounds = 3 if (self.cuda or self.quick) else 5
        self.deadline = time.monotonic() + args.budget_s
        tag = f"-{'-'.join(args.only)}" if getattr(args, "only", None) else ""
        self.path = Path(args.out or RESULTS) / (
            f"{args.device}-{dt.date.today().isoformat()}{tag}.json"
        )
        self.data: dict[str, Any] = {
            "device": args.device,
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "quick": self.quick,
            "only": getattr(args, "only", None),
            "machine": machine(self.dev),
            "commit": git_commit(),
            # other jobs on a shared host slow every rate alike; the ratios hold
            "load_avg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "rows": [],
            "skipped": [],
        }

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.dev)

    def group(self, cases: list[Case], *, need_s: float = 10.0) -> list[dict[str, Any]]:
        """Time the cases interleaved: ``self.rounds`` rounds of one segment each.

        Interleaving spreads the load of other jobs on a shared machine over
        all cases alike; each rate is the median over the rounds. A case's
        step returns the items it did. Failures and budget overruns are
        recorded, not raised, so that one broken case leaves the others.
        """
        ready: list[tuple[Case, Callable[[], int], float, list[float]]] = []
        for case in cases:
            if self.left() < need_s:
                self.skip(case.row["id"], f"time budget ({self.left():.0f} s left)")
                continue
            try:
                step = case.make()
                t0 = time.perf_counter()
                step()
                self.sync()
                first = time.perf_counter() - t0
                for _ in range(case.warmup - 1):
                    step()
                self.sync()
            except Exception as exc:  # noqa: BLE001
                self.fail(case.row["id"], exc)
                continue
            ready.append((case, step, first, []))
        for _ in range(self.rounds):
            for case, step, _, rates in list(ready):
                try:
                    for _ in range(case.rewarm):  # past batches prefetched meanwhile
                        step()
                    self.sync()
                    items, steps = 0, 0
                    t0 = time.perf_counter()
                    while steps < 1 or time.perf_counter() - t0 < self.seconds:
                        items += step()
                        steps += 1
                    self.sync()
                    rates.append(items / (time.perf_counter() - t0))
                except Exception as exc:  # noqa: BLE001
                    self.fail(case.row["id"], exc)
                    ready = [r for r in ready if r[0] is not case]
        rows = []
        for case, _, first, rates in ready:
            row = {"unit": "img/s", **case.row, "value": statistics.median(rates)}
            row["rounds"] = rates
            row["first_step_s"] = first
            if case.per > 1:
                row["per_model"] = row["value"] / case.per
            self.add(row)
            rows.append(row)
        if self.cuda:
            torch.cuda.empty_cache()
        return rows

    def fail(self, what: str, exc: Exception) -> None:
        self.skip(what, f"error: {type(exc).__name__}: {exc}"[:300])

    def add(self, row: dict[str, Any]) -> None:
        self.data["rows"].append(row)
        shown = f"{row['value']:,.1f} {row['unit']}"
        if "per_model" in row:
            shown += f" ({row['per_model']:,.0f} per model)"
        print(f"  {row['label']:<62} {shown}", flush=True)
        self.save()

    def skip(self, what: str, why: str) -> None:
        self.data["skipped"].append({"id": what, "why": why})
        print(f"  {what}: skipped, {why}", flush=True)
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2) + "\n")
        os.replace(tmp, self.path)


def git_commit() -> str | None:
    """The checkout's commit, ``-dirty`` when tracked files differ from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "diff", "--quiet", "HEAD", "--"], cwd=REPO, check=False
        ).returncode
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("-dirty" if dirty else "")


def machine(dev: torch.device) -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "torchvision": TORCHVISION,
        "python": platform.python_version(),
    }


# ------------------------------------------------------------------- data


def random_set(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    return images, rng.integers(0, 10, size=n).astype(np.int64)


class PerImageSet(torch.utils.data.Dataset):
    """torchvision's CIFAR10 dataset in miniature: one transformed item each.

    ``views`` = 2 is SupContrast's TwoCropTransform (a list of two views).
    Without torchvision, the transform is the prunelens op on one image.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        transform: Callable[[Any], Tensor],
        views: int,
    ) -> None:
        self.images, self.labels = images, labels
        self.transform, self.views = transform, views

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        img: Any = self.images[i]
        img = Image.fromarray(img) if TORCHVISION else torch.from_numpy(img)[None]
        if self.views == 1:
            return self.transform(img), int(self.labels[i])
        return [self.transform(img) for _ in range(self.views)], int(self.labels[i])


def per_image_transform(contrastive: bool) -> Callable[[Any], Tensor]:
    """The usual per-image pipeline (torchvision + PIL when present)."""
    if TORCHVISION:
        if contrastive:
            a = SCL_HP["augment"]
            ops = [
                T.RandomResizedCrop(32, scale=a["scale"]),
                T.RandomHorizontalFlip(),
                T.RandomApply([T.ColorJitter(*a["jitter"])], p=a["p_jitter"]),
                T.RandomGrayscale(p=a["p_gray"]),
            ]
        else:
            ops = [T.RandomCrop(32, padding=4), T.RandomVerticalFlip()]
            ops.append(T.RandomHorizontalFlip())
        ops += [T.ToTensor(), T.Normalize(NORM.mean, NORM.std)]
        return T.Compose(ops)
    gen = torch.Generator().manual_seed(0)  # timing only: workers share a stream

    def one(x: Tensor) -> Tensor:
        x = augment.to_unit_float(x)
        if contrastive:
            x = augment.simclr_view(x, gen, **SCL_HP["augment"])
        else:
            x = augment.crop_flip(x, gen, **SUP_AUG)
        return augment.normalize(x, NORM.mean, NORM.std)[0]

    return one


def cycle(loader: torch.utils.data.DataLoader) -> Iterator[Any]:
    while True:
        yield from loader


def baseline_label(workers: int) -> str:
    how = "torchvision PIL" if TORCHVISION else "per-image prunelens loop (no tv)"
    return f"baseline: {how}, DataLoader({workers} workers), fp32"


# -------------------------------------------------------------- training


def sup_baseline(b: Bench, n: int, workers: int) -> Callable[[], Callable[[], int]]:
    def make() -> Callable[[], int]:
        images, labels = random_set(n)
        ds = PerImageSet(images, labels, per_image_transform(False), 1)
        batches = cycle(_loader(ds, SUP_BATCH, workers, b.cuda))
        model = build_classifier(ARCH).to(b.dev)
        opt = torch.optim.SGD(model.parameters(), **SGD)

        def step() -> int:
            x, y = next(batches)
            x, y = x.to(b.dev, non_blocking=True), y.to(b.dev, non_blocking=True)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            int((logits.argmax(1) == y).sum())  # per-step bookkeeping, as usual
            return len(y)

        return step

    return make


def scl_baseline(
    b: Bench, n: int, workers: int, batch: int
) -> Callable[[], Callable[[], int]]:
    def make() -> Callable[[], int]:
        images, labels = random_set(n)
        ds = PerImageSet(images, labels, per_image_transform(True), 2)
        batches = cycle(_loader(ds, batch, workers, b.cuda))
        net = SupConNetwork(build_encoder(ARCH)).to(b.dev)
        opt = torch.optim.SGD(net.parameters(), **SGD)

        def step() -> int:
            (v1, v2), y = next(batches)
            x = torch.cat([v1, v2]).to(b.dev, non_blocking=True)
            y = y.to(b.dev, non_blocking=True)
            f1, f2 = net(x).split(len(y))
            loss = supcon_loss(torch.stack([f1, f2], dim=1), y, **_temps())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss.item()  # per-step loss logging, as usual
            return 2 * len(y)

        return step

    return make


def _temps() -> dict[str, float]:
    return {k: SCL_HP[k] for k in ("temperature", "base_temperature")}


def _loader(
    ds: torch.utils.data.Dataset, batch: int, workers: int, pin: bool
) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        ds,
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        pin_memory=pin,
        drop_last=True,
        persistent_workers=workers > 0,
    )


def _on_device(b: Bench, n: int) -> tuple[Tensor, Tensor]:
    images, labels = random_set(n)
    return torch.from_numpy(images).to(b.dev), torch.from_numpy(labels).to(b.dev)


def _batches(b: Bench, n: int, batch: int, seed: int) -> tuple[torch.Generator, Any]:
    """A generator and an endless source of index batches, as fit() draws them
    (a CPU generator whose draws are copied to the device)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def idx() -> Iterator[Tensor]:
        while True:
            perm = augment.permutation(n, gen, b.dev)
            for i in range(0, n - batch + 1, batch):
                yield perm[i : i + batch]

    return gen, idx()


def sup_project(
    b: Bench,
    n: int,
    bf16: bool = False,
    compile_mode: str | None = None,
    *,
    arch: dict[str, Any] = ARCH,
    batch: int = SUP_BATCH,
) -> Callable[[], Callable[[], int]]:
    """One model of ``arch`` as prunelens.train.fit trains it; ``compile_mode``
    (not None) wraps the model in torch.compile with that mode ("default",
    "reduce-overhead" for CUDA graphs)."""

    def make() -> Callable[[], int]:
        images, labels = _on_device(b, n)
        model = build_classifier(arch).to(b.dev, memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), **SGD)
        net = model if compile_mode is None else torch.compile(model, mode=compile_mode)
        views = _crop_flip(SUP_AUG)
        gen, batches = _batches(b, n, batch, 0)

        def step() -> int:
            idx = next(batches)
            x, y = batch_inputs(images, labels, [idx], [gen], views, NORM)
            # the `precision: bf16` switch of prunelens.train.train
            with torch.autocast(b.dev.type, dtype=torch.bfloat16, enabled=bf16):
                loss, _ = _ce(net, x, y)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            opt.step()
            return len(idx)

        return step

    return make


def scl_project(
    b: Bench, n: int, batch: int, bf16: bool = False, compile_mode: str | None = None
) -> Callable[[], Callable[[], int]]:
    def make() -> Callable[[], int]:
        images, labels = _on_device(b, n)
        net = SupConNetwork(build_encoder(ARCH)).to(
            b.dev, memory_format=torch.channels_last
        )
        opt = torch.optim.SGD(net.parameters(), **SGD)
        if compile_mode is not None:
            net = torch.compile(net, mode=compile_mode)  # what the batch loss calls
        views = _two_views(SCL_HP["augment"])
        objective = _supcon(SCL_HP["temperature"], SCL_HP["base_temperature"])
        gen, batches = _batches(b, n, batch, 0)

        def step() -> int:
            idx = next(batches)
            x, y = batch_inputs(images, labels, [idx], [gen], views, NORM)
            with torch.autocast(b.dev.type, dtype=torch.bfloat16, enabled=bf16):
                loss, _ = objective(net, x, y)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            opt.step()
            return 2 * len(idx)

        return step

    return make


def stacked(
    b: Bench,
    n: int,
    k: int,
    *,
    channels_last: bool = True,
    amp_bf16: bool = False,
    compile: bool = False,
    compile_mode: str | None = None,
) -> Callable[[], Callable[[], int]]:
    def make() -> Callable[[], int]:
        images, labels = _on_device(b, n)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        model = StackedClassifier(k, ARCH).to(b.dev, memory_format=fmt)
        net: Callable[[Tensor], Tensor] = (
            torch.compile(model, mode=compile_mode) if compile else model
        )
        opt = torch.optim.SGD(model.parameters(), **SGD)
        sources = [_batches(b, n, SUP_BATCH, seed) for seed in range(k)]
        gens = [g for g, _ in sources]

        def step() -> int:
            idx = [next(batches) for _, batches in sources]
            x, y = batch_inputs(images, labels, idx, gens, _crop_flip(SUP_AUG), NORM)
            with torch.autocast(b.dev.type, torch.bfloat16, enabled=amp_bf16):
                losses, _ = _ce(net, x.contiguous(memory_format=fmt), y)
            opt.zero_grad(set_to_none=True)
            losses.sum().backward()
            opt.step()
            return k * SUP_BATCH

        return step

    return make


def inference(
    b: Bench, n: int, arch: dict[str, Any], batch: int
) -> Callable[[], Callable[[], int]]:
    """Eval-mode logits and representation of ``batch`` images, the path of
    the predict rule (``prunelens.evaluate.predict``: uint8 -> normalised,
    channels_last, no grad)."""

    def make() -> Callable[[], int]:
        images, _ = random_set(n)
        model = build_classifier(arch).to(b.dev, memory_format=torch.channels_last)
        starts = iter(range(0, 10**9, batch))

        def step() -> int:
            i = next(starts) % (n - batch + 1)
            predict(
                model,
                images[i : i + batch],
                NORM.mean,
                NORM.std,
                device=str(b.dev),
                batch=batch,
            )
            return batch

        return step

    return make


def arch_rows(b: Bench, n: int, batch: int) -> None:
    """model.arch: WRN-16-2 vs ResNet-18, one training step and inference at
    the same batch size, the four cases interleaved (drift hits all alike)."""
    b.data["arch_batch"] = batch
    cases = []
    for kind in ("train", "infer"):
        for name, arch in ARCH_CASES.items():
            make = (
                sup_project(b, n, arch=arch, batch=batch)
                if kind == "train"
                else inference(b, n, arch, batch)
            )
            what = "Sup training step" if kind == "train" else "inference (predict)"
            label = f"{name}: {what}, batch {batch}, fp32, channels_last"
            cases.append(
                Case({"id": f"arch/{kind}/{name}", "label": label}, make, warmup=2)
            )
    b.group(cases, need_s=20.0)


# ------------------------------------------------------------ augmentation


def aug_rows(b: Bench) -> None:
    """Augmentation alone on a batch of 512: per image (baseline) vs batched.

    The per-image pipeline runs in this one process (a DataLoader spreads it
    over its workers); the two are timed alternately, median of 5.
    """
    n, repeats = 512, 5
    images, _ = random_set(n)
    raw = torch.from_numpy(images).to(b.dev)
    gen = torch.Generator(device=b.dev).manual_seed(0)
    items = (
        [Image.fromarray(im) for im in images]
        if TORCHVISION
        else [torch.from_numpy(im)[None] for im in images]
    )
    how = "torchvision PIL" if TORCHVISION else "prunelens per image (no tv)"
    for contrastive, name in ((False, "sup"), (True, "scl")):
        views = 2 if contrastive else 1
        tf = per_image_transform(contrastive)

        def per_image(tf: Callable[[Any], Tensor] = tf, views: int = views) -> Any:
            return [torch.stack([tf(it) for it in items]) for _ in range(views)]

        def batched(contrastive: bool = contrastive) -> Any:
            x = augment.to_unit_float(raw)
            if contrastive:
                v = augment.two_views(x, gen, **SCL_HP["augment"])
                return [augment.normalize(y, NORM.mean, NORM.std) for y in v]
            x = augment.crop_flip(x, gen, **SUP_AUG)
            return augment.normalize(x, NORM.mean, NORM.std)

        what = "two views" if contrastive else "crop+flips"
        cases = {
            "baseline": (per_image, f"{how}, one process (cpu)"),
            "project": (batched, f"prunelens batched ({b.dev.type})"),
        }
        times: dict[str, list[float]] = {kind: [] for kind in cases}
        for i in range(repeats + 1):
            for kind, (fn, _) in cases.items():
                t0 = time.perf_counter()
                fn()
                b.sync()
                if i:  # the first call warms up
                    times[kind].append(time.perf_counter() - t0)
        for kind, (_, label) in cases.items():
            b.add(
                {
                    "id": f"aug/{name}/{kind}",
                    "label": f"aug {name} {what}: {label}",
                    "value": views * n / statistics.median(times[kind]),
                    "unit": "views/s",
                }
            )


# ---------------------------------------------------------------- analysis


def analysis_rows(b: Bench) -> None:
    frac = 0.02 if (b.quick and not b.cuda) else 1.0
    encoder = build_classifier(ARCH).encoder.to(
        b.dev, memory_format=torch.channels_last
    )
    n = max(256, int(N_EMBED * frac))
    raw, _ = _on_device(b, n)
    x = augment.normalize(augment.to_unit_float(raw), NORM.mean, NORM.std)
    x = x.contiguous(memory_format=torch.channels_last)
    probe_activations(encoder, x[:256], batch=256)  # warm-up
    b.sync()
    t0 = time.perf_counter()
    acts = probe_activations(encoder, x, batch=256)
    seconds = (time.perf_counter() - t0) * N_EMBED / n
    widths = [a.shape[1] for a in acts]
    note = f"timed {n:,} images, scaled to 60,000" if n < N_EMBED else ""
    b.add(
        {
            "id": "analysis/embed",
            "label": f"probe activations ({len(widths)} probes), 60,000 images",
            "value": seconds,
            "unit": "s",
            "extrapolated": bool(note),
            "note": note,
        }
    )
    del raw, x, acts
    rng = np.random.default_rng(0)
    n_test = max(100, int(N_KNN_TEST * frac))
    train = [
        np.abs(rng.normal(size=(N_KNN_TRAIN, w))).astype(np.float32) for w in widths
    ]
    test = [np.abs(rng.normal(size=(n_test, w))).astype(np.float32) for w in widths]
    y = rng.integers(0, 10, size=N_KNN_TRAIN)
    probe_predictions(train[:1], y, [t[:100] for t in test[:1]], k=KNN_K, device=b.dev)
    b.sync()
    t0 = time.perf_counter()
    probe_predictions(train, y, test, k=KNN_K, device=b.dev)
    b.sync()
    seconds = (time.perf_counter() - t0) * N_KNN_TEST / n_test
    note = f"timed {n_test:,} queries per probe, scaled to 10,000" if frac < 1 else ""
    b.add(
        {
            "id": "analysis/knn",
            "label": f"k-NN (k={KNN_K}) 50,000 x 10,000 x {len(widths)} probes",
            "value": seconds,
            "unit": "s",
            "extrapolated": bool(note),
            "note": note,
        }
    )


# ----------------------------------------------------------------- logging

LOGGING_REPS = 9  # per case, after one untimed job each


def _quick_prepared(out: Path) -> Path:
    """A 1,000 + 1,000 image prepared file of random pixels (timing only)."""
    from prunelens.data import CLASSES

    rng = np.random.default_rng(0)
    arrays: dict[str, Any] = {}
    for split in ("train", "test"):
        arrays[f"{split}_images"] = rng.integers(0, 256, (1000, 32, 32, 3), np.uint8)
        arrays[f"{split}_labels"] = np.arange(1000, dtype=np.int64) % 10
        arrays[f"{split}_index"] = np.arange(1000, dtype=np.int64)
    path = out / "prepared.npz"
    np.savez(path, classes=np.array(CLASSES), **arrays)
    return path


def logging_rows(b: Bench, reps: int = LOGGING_REPS) -> None:
    """One quick-scale-like job with curves logged (every 2 steps, as the
    quick profile) vs not, interleaved; seconds per job, whole job (data
    loading, training, test evaluation, writing)."""
    from prunelens.train import train_supervised

    hp = {"epochs": 2, "batch_size": 128, "lr": 0.1, "momentum": 0.9,
          "nesterov": False, "weight_decay": 5e-4, "milestones": [1], "gamma": 0.1,
          "augment": SUP_AUG}  # fmt: skip
    settings = {"device": b.dev.type, "threads": torch.get_num_threads(),
                "precision": "bf16", "eval_batch_size": 256}  # fmt: skip
    # wall seconds, and this process's CPU seconds: less moved by other
    # processes' load on a shared host
    times: dict[str, list[float]] = {"on": [], "off": []}
    cpu: dict[str, list[float]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        data = _quick_prepared(out)

        def job(case: str) -> tuple[float, float]:
            on = case == "on"
            t0, c0 = time.perf_counter(), time.process_time()
            train_supervised(
                data=data, seeds=[0], arch=ARCH, hp=hp,
                norm={"mean": list(NORM.mean), "std": list(NORM.std)},
                gmp={"begin": 2, "end": 12, "frequency": 2, "scope": "layerwise"},
                sparsity=50, schedule="gmp",
                model_outs=[out / case / "model.pt"],
                metrics_outs=[out / case / "metrics.json"],
                curves_outs=[out / case / "curves.csv"] if on else None,
                tensorboard_dirs=[out / case / "tb"] if on else None,
                settings={**settings, "log_every_steps": 2 if on else 0},
            )  # fmt: skip
            b.sync()
            return time.perf_counter() - t0, time.process_time() - c0

        for case in ("on", "off"):  # untimed: imports, allocator warm-up
            job(case)
        for i in range(reps):
            # alternate which case goes first: drift hits both alike
            for case in ("on", "off") if i % 2 == 0 else ("off", "on"):
                wall, used = job(case)
                times[case].append(wall)
                cpu[case].append(used)
    labels = {
        "on": "quick-scale Sup/GMP job, curves logged (every 2 steps, TB + CSV)",
        "off": "quick-scale Sup/GMP job, no curves (epoch rows only)",
    }
    for case in ("on", "off"):
        b.add(
            {
                "id": f"logging/{case}",
                "label": labels[case],
                "value": statistics.median(times[case]),
                "unit": "s",
                "rounds": times[case],
                "cpu_s": cpu[case],
            }
        )
    paired = [a / c for a, c in zip(times["on"], times["off"], strict=True)]
    b.data["logging_ratio"] = {
        "of_medians": statistics.median(times["on"]) / statistics.median(times["off"]),
        "median_paired": statistics.median(paired),
        "paired": paired,
        "cpu_of_medians": statistics.median(cpu["on"]) / statistics.median(cpu["off"]),
    }
    b.save()
    print(f"  on / off: {b.data['logging_ratio']['of_medians']:.3f}", flush=True)


# --------------------------------------------------------------------- RSS

_RSS_CHILD = """
import json, resource, sys, time
from pathlib import Path
import numpy as np
from prunelens.data import CLASSES
from prunelens.train import train_supervised
out, device = Path(sys.argv[1]), sys.argv[2]
rng = np.random.default_rng(0)
arrays = {}
for split in ("train", "test"):
    arrays[f"{split}_images"] = rng.integers(0, 256, (1000, 32, 32, 3), np.uint8)
    arrays[f"{split}_labels"] = np.arange(1000, dtype=np.int64) % 10
    arrays[f"{split}_index"] = np.arange(1000, dtype=np.int64)
np.savez(out / "prepared.npz", classes=np.array(CLASSES), **arrays)
t0 = time.perf_counter()
train_supervised(
    data=out / "prepared.npz", model_outs=[out / "model.pt"],
    metrics_outs=[out / "metrics.json"], arch={"depth": 16, "width": 2},
    hp={"epochs": 1, "batch_size": 128, "lr": 0.1, "momentum": 0.9,
        "nesterov": False, "weight_decay": 5e-4, "milestones": [],
        "augment": {"padding": 4, "hflip": True, "vflip": True}},
    norm={"mean": [0.5] * 3, "std": [0.25] * 3}, gmp=None, sparsity=0,
    seeds=[0], schedule="dense",
    settings={"device": device, "threads": 1, "eval_batch_size": 256},
)
status = Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0]
print(json.dumps({"maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "vmhwm_kib": int(status), "train_s": time.perf_counter() - t0}))
"""


def rss_row(b: Bench) -> None:
    """Peak RSS of a quick-scale job, run first while this process is small.

    A forked child's ``ru_maxrss`` starts at its parent's RSS (Linux carries
    the high-water mark across fork and exec), so a large parent would hide
    the child's own peak; the child's VmHWM (its own address space only) is
    printed beside it as a check.
    """
    path = os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [sys.executable, "-c", _RSS_CHILD, tmp, b.dev.type],
            capture_output=True,
            text=True,
            env=env,
            timeout=max(30, b.left()),
        )
    if proc.returncode:
        b.skip("rss/train_quick", f"child failed: {proc.stderr.strip()[-300:]}")
        return
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    b.add(
        {
            "id": "rss/train_quick",
            "label": "peak RSS: train_supervised, 1,000 images, 1 epoch",
            "value": got["maxrss_kib"] / 2**20,
            "unit": "GiB",
            "note": f"VmHWM {got['vmhwm_kib'] / 2**20:.2f} GiB; "
            f"{got['train_s']:.0f} s, 1 thread, eval batch 256 as the train rule",
        }
    )


# ------------------------------------------------------------------- main


def measure(args: argparse.Namespace) -> Path:
    b = Bench(args)
    # One thread on CPU by default: the workflow's training rules run with
    # threads: 1, and on a shared machine OpenMP threads would wait on each
    # other whenever another job takes a core.
    threads = args.threads or (None if b.cuda else 1)
    if threads:
        torch.set_num_threads(threads)
        b.data["machine"]["torch_threads"] = threads
    if args.only:
        return measure_only(b, args.only)
    # Every prunelens training job keeps glibc's freed memory; it is
    # process-wide, so the baselines get it too (a conservative comparison).
    keep_freed_memory()
    cores = os.cpu_count() or 1
    # DataLoader workers: what the machine allows beside the training process.
    workers_list = [0, 1] if cores <= 2 else [min(8, cores - 2)]
    n = 50_000 if b.cuda else 4096
    scl_batch = SCL_BATCH if b.cuda else 64  # a CPU step of 1,024 takes ~20 s
    warm = 5 if b.cuda else 1
    ks = args.ks or ([1, 16, 32, 64] if b.cuda else [1, 2])
    print(f"{b.data['machine']} -> {b.path}")

    print("quick-scale training job, in a subprocess")
    rss_row(b)
    print("augmentation alone (batch 512)")
    aug_rows(b)

    print(f"Sup training (batch {SUP_BATCH} per model)")
    b.group(
        [
            Case(
                {"id": f"sup/baseline/w{w}", "label": f"Sup {baseline_label(w)}"},
                sup_baseline(b, n, w),
                warmup=warm + 2 * w,
                rewarm=2 * w,
            )
            for w in workers_list
        ]
        + [
            Case(
                {
                    "id": "sup/project",
                    "label": "Sup prunelens: one model, channels_last",
                },
                sup_project(b, n),
                warmup=warm,
            ),
            Case(
                {
                    "id": "sup/project-bf16",
                    "label": "Sup prunelens: one model, channels_last, bf16 autocast",
                },
                sup_project(b, n, bf16=True),
                warmup=warm,
            ),
        ]
        + [
            Case(
                {
                    "id": f"sup/stacked/k{k}",
                    "label": f"Sup prunelens stacked K={k}",
                    "k": k,
                },
                stacked(b, n, k),
                warmup=warm,
                per=k,
            )
            for k in ks
        ]
    )
    print(f"SCL pre-training (batch {scl_batch}, two views)")
    views = {"unit": "views/s"}
    b.group(
        [
            Case(
                {
                    "id": f"scl/baseline/w{w}",
                    "label": f"SCL {baseline_label(w)}",
                    **views,
                },
                scl_baseline(b, n, w, scl_batch),
                warmup=warm + 2 * w,
                rewarm=2 * w,
            )
            for w in workers_list
        ]
        + [
            Case(
                {"id": "scl/project", "label": "SCL prunelens: one model", **views},
                scl_project(b, n, scl_batch),
                warmup=warm,
            )
        ]
    )
    if b.cuda:
        switches(b, n, max(ks), warm)

    print("analysis path")
    if b.left() > 30:
        try:
            analysis_rows(b)
        except Exception as exc:  # noqa: BLE001
            b.fail("analysis", exc)
    else:
        b.skip("analysis", f"time budget ({b.left():.0f} s left)")
    if b.cuda:
        compiled(b, n, max(ks), warm)
    return b.path


def measure_only(b: Bench, sections: list[str]) -> Path:
    """The sections named by --only, into their own result file (``arch`` on
    any device, the others CUDA)."""
    n, warm = 50_000, 5
    for section in sections:
        if section == "arch":
            print(f"model.arch (batch {ARCH_BATCH}, interleaved)")
            arch_rows(b, n if b.cuda else 4096, ARCH_BATCH)
        elif section == "compile1":
            one_model_compiled(b, n, warm)
        elif section == "procs":
            concurrent_processes(b, [1, 4, 8], ["eager", "reduce-overhead"])
        elif section == "logging":
            print("training curves: a quick-scale job logged vs not (interleaved)")
            logging_rows(b)
        else:
            raise SystemExit(f"--only: unknown section {section!r}")
    return b.path


def switches(b: Bench, n: int, k: int, warm: int) -> None:
    """Each eager switch of the stack at K = k, alone and together."""
    print(f"CUDA switches, stacked K={k} (eager)")
    configs = [
        ("fp32-contiguous", {"channels_last": False}),
        ("fp32-channels_last", {}),
        ("bf16-contiguous", {"channels_last": False, "amp_bf16": True}),
        ("bf16-channels_last", {"amp_bf16": True}),
    ]
    b.group(
        [
            Case(
                {"id": f"switch/k{k}/{name}", "label": f"K={k} {name}", "k": k},
                stacked(b, n, k, **kw),
                warmup=warm,
                per=k,
            )
            for name, kw in configs
        ]
    )
    # cudnn.benchmark is process-wide, so it gets a group of its own.
    torch.backends.cudnn.benchmark = True
    try:
        b.group(
            [
                Case(
                    {
                        "id": f"switch/k{k}/bf16-channels_last-cudnn_benchmark",
                        "label": f"K={k} bf16-channels_last-cudnn_benchmark",
                        "k": k,
                    },
                    stacked(b, n, k, amp_bf16=True),
                    warmup=warm + 5,  # the autotuner's first calls
                    per=k,
                )
            ]
        )
    finally:
        torch.backends.cudnn.benchmark = False


def compiled(b: Bench, n: int, k: int, warm: int) -> None:
    """torch.compile (mode default) of the stack, last: its compile is slow."""
    print(f"CUDA torch.compile, stacked K={k}")
    for name, kw in (
        ("bf16-channels_last-compile", {"amp_bf16": True}),
        # CUDA graphs (torch.compile's reduce-overhead): one launch per step
        (
            "bf16-channels_last-compile-cudagraphs",
            {"amp_bf16": True, "compile_mode": "reduce-overhead"},
        ),
        ("fp32-contiguous-compile", {"channels_last": False}),
    ):
        rows = b.group(
            [
                Case(
                    {"id": f"switch/k{k}/{name}", "label": f"K={k} {name}", "k": k},
                    stacked(b, n, k, compile=True, **kw),
                    warmup=warm,
                    per=k,
                )
            ],
            need_s=90,
        )
        for row in rows:
            # The first step compiles forward and backward; the rest is a step.
            row["compile_s"] = row["first_step_s"] - k * SUP_BATCH / row["value"]
            print(f"    compile time {row['compile_s']:.0f} s")
            b.save()


def one_model_compiled(b: Bench, n: int, warm: int) -> None:
    """One model per process with torch.compile, plain and with CUDA graphs:
    what a single-seed job can reach (SCL pre-training is one seed per job)."""
    print("CUDA torch.compile, one model")
    cases = [
        (
            "sup/project-bf16-compile",
            "Sup prunelens: one model, bf16, compile",
            sup_project(b, n, bf16=True, compile_mode="default"),
            {},
        ),
        (
            "sup/project-bf16-cudagraphs",
            "Sup prunelens: one model, bf16, compile + CUDA graphs",
            sup_project(b, n, bf16=True, compile_mode="reduce-overhead"),
            {},
        ),
        (
            "scl/project-bf16-cudagraphs",
            "SCL prunelens: one model, bf16, compile + CUDA graphs",
            scl_project(b, n, SCL_BATCH, bf16=True, compile_mode="reduce-overhead"),
            {"unit": "views/s"},
        ),
    ]
    for rid, label, make, extra in cases:
        rows = b.group([Case({"id": rid, "label": label, **extra}, make, warmup=warm)],
                       need_s=60)  # fmt: skip
        for row in rows:
            row["compile_s"] = row["first_step_s"]
            b.save()


_PROC_CHILD = """
import argparse, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import torch
import bench_train as bt
ready, go, mode = Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
seconds, device = float(sys.argv[5]), sys.argv[6]
b = bt.Bench(argparse.Namespace(device=device, quick=False, budget_s=600,
                                out=ready.parent))
step = bt.sup_project(b, 50_000, bf16=True,
                      compile_mode=None if mode == "eager" else mode)()
for _ in range(20):
    step()
b.sync()
ready.touch()
while not go.exists():
    time.sleep(0.01)
items, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < seconds:
    items += step()
b.sync()
print(items / (time.perf_counter() - t0), flush=True)
"""


def concurrent_processes(b: Bench, procs: list[int], modes: list[str]) -> None:
    """P training processes sharing the GPU, one model each (bf16,
    channels_last): what ``profiles/gpu``'s ``gpu`` slots do. All start timing
    together after warming up; the aggregate is the sum of their rates."""
    print(f"{b.dev.type}: concurrent training processes, one model each")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    for mode in modes:
        for p in procs:
            rid = f"sup/procs/{mode}/p{p}"
            if b.left() < 60:
                b.skip(rid, f"time budget ({b.left():.0f} s left)")
                continue
            with tempfile.TemporaryDirectory() as tmp:
                go = Path(tmp, "go")
                children = [
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-c",
                            _PROC_CHILD,
                            str(Path(__file__).parent),
                            str(Path(tmp, f"ready{i}")),
                            str(go),
                            mode,
                            "8",
                            b.dev.type,
                        ],
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        text=True,
                        env=env,
                    )  # fmt: skip
                    for i in range(p)
                ]
                deadline = time.monotonic() + min(120, b.left())
                while time.monotonic() < deadline and not all(
                    Path(tmp, f"ready{i}").exists() for i in range(p)
                ):
                    if any(c.poll() not in (None, 0) for c in children):
                        break
                    time.sleep(0.1)
                go.touch()
                outs = []
                for c in children:
                    try:
                        outs.append(c.communicate(timeout=max(30, b.left())))
                    except subprocess.TimeoutExpired:
                        c.kill()
                        outs.append(c.communicate())
            rates, errors = [], []
            for out, err in outs:
                try:
                    rates.append(float(out.strip().splitlines()[-1]))
                except (ValueError, IndexError):
                    errors.append(err.strip()[-300:])
            if errors:
                b.fail(rid, RuntimeError(" | ".join(errors)))
                continue
            b.add(
                {
                    "id": rid,
                    "label": f"Sup prunelens: {p} processes x one model, bf16, {mode}",
                    "unit": "img/s",
                    "value": sum(rates),
                    "per_model": sum(rates) / p,
                    "per_process": rates,
                    "note": "sum over processes timed together for 8 s",
                }
            )


# ------------------------------------------------------------------ report


def paper_image_steps() -> tuple[dict[str, float], str]:
    """Training image-steps of the paper grid in config.yaml per kind of step
    (``ce``: Sup, the SCL heads and all One-Shot fine-tunes; ``supcon``: SCL
    pre-training's image-views), with the formula."""
    import yaml  # only here: measuring needs no YAML parser

    c = yaml.safe_load((REPO / "config.yaml").read_text())
    seeds, n = len(c["seeds"]), 50_000
    sch = c["schedules"]  # per method and schedule, its sparsities

    def count(method: str, schedule: str) -> int:
        return len(sch[method].get(schedule) or [])

    sg, so = count("sup", "gmp"), count("sup", "oneshot")
    cg, cd, co = (
        count("scl", "gmp"),
        count("scl", "delayed_gmp"),
        count("scl", "oneshot"),
    )
    one = c["oneshot"]["epochs"]
    sup = seeds * n * ((1 + sg) * c["sup"]["epochs"] + so * one)
    pre, head = c["scl"]["pretrain"]["epochs"], c["scl"]["head"]["epochs"]
    # The head trains on a frozen encoder: forward only, ~1/3 of a full step.
    scl_ce = seeds * n * ((1 + cg + cd) * head / 3 + co * one)
    supcon = seeds * n * (1 + cg + cd) * 2 * pre
    formula = (
        f"seeds x N x [Sup: (1 + {sg} GMP) x {c['sup']['epochs']} + {so} x {one} "
        f"One-Shot] + seeds x N x [SCL: (1 + {cg} GMP + {cd} dGMP) x (2 views x "
        f"{pre} + {head} head epochs / 3) + {co} x {one} One-Shot], seeds = "
        f"{seeds}, N = 50,000; the head counts 1/3 (forward through the frozen "
        "encoder only)"
    )
    return {"ce": float(sup + scl_ce), "supcon": float(supcon)}, formula


def _newest(files: list[Path]) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Per device, the newest full run, with the rows of extra-section runs
    (--only) of the same day added (a re-measured row replaces the old)."""
    out: dict[str, tuple[Path, dict[str, Any]]] = {}
    extras: dict[str, list[dict[str, Any]]] = {}
    for f in files:
        data = json.loads(f.read_text())
        key = data["device"]
        if data.get("only"):
            extras.setdefault(key, []).append(data)
        elif key not in out or data["date"] > out[key][1]["date"]:
            out[key] = (f, data)
    for key, runs in extras.items():
        if key not in out:
            continue
        main = out[key][1]
        for extra in sorted(runs, key=lambda d: d["date"]):
            if extra["date"][:10] != main["date"][:10]:
                continue
            ids = {r["id"] for r in extra["rows"]}
            main["rows"] = [r for r in main["rows"] if r["id"] not in ids]
            main["rows"] += extra["rows"]
            main.setdefault("merged", []).append(extra["date"])
    return out


def _best(rows: list[dict[str, Any]], prefix: str) -> dict[str, Any] | None:
    hits = [r for r in rows if r["id"].startswith(prefix)]
    return max(hits, key=lambda r: r["value"]) if hits else None


def _fmt(v: float, unit: str) -> str:
    if unit in ("s", "GiB"):
        return f"{v:,.2f} {unit}"
    return f"{v:,.0f} {unit}"


def _device_table(data: dict[str, Any]) -> list[str]:
    """One row per measurement, with its ratios to the baseline and one model."""
    rows = data["rows"]
    base = {w: _best(rows, f"{w}/baseline") for w in ("sup", "scl")}
    one = next((r for r in rows if r["id"] == "sup/project"), None)
    out = [
        "| measurement | result | per model | x baseline | x one model | note |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        head = r["id"].split("/")[0]
        ref = base.get("sup" if head == "switch" else head)
        if head == "aug":
            twin = r["id"].rsplit("/", 1)[0] + "/baseline"
            ref = next((x for x in rows if x["id"] == twin), None)
        vs_base = ""
        if ref is r:
            vs_base = "ref"
        elif ref and "/baseline" not in r["id"]:
            vs_base = _x(r["value"] / ref["value"])
        vs_one = ""
        if one and head in ("sup", "switch") and "k" in r:
            vs_one = _x(r["value"] / one["value"])
        notes = [r["note"]] if r.get("note") else []
        if "rounds" in r:
            lo, hi = min(r["rounds"]), max(r["rounds"])
            notes.append(f"median of {len(r['rounds'])} rounds ({lo:,.0f}-{hi:,.0f})")
        if "per_process" in r:
            lo, hi = min(r["per_process"]), max(r["per_process"])
            notes.append(f"per process {lo:,.0f}-{hi:,.0f}")
        if "compile_s" in r:
            notes.append(f"compile {r['compile_s']:.0f} s, not in the rate")
        per = f"{r['per_model']:,.0f}" if "per_model" in r else ""
        out.append(
            f"| {r['label']} | {_fmt(r['value'], r['unit'])} | {per} | {vs_base} | "
            f"{vs_one} | {'; '.join(notes)} |"
        )
    for s in data.get("skipped", []):
        out.append(f"| {s['id']} | skipped | | | | {s['why']} |")
    return out


def _status(value: float | None, ok: bool) -> str:
    return "not measured yet" if value is None else ("met" if ok else "NOT met")


def write_report(dirs: list[Path], dest: Path) -> None:
    files = sorted({f for d in dirs if d.is_dir() for f in d.glob("*.json")})
    newest = _newest(files)
    cpu = newest.get("cpu", (None, None))[1]
    gpu = newest.get("cuda", (None, None))[1]
    try:
        by_kind, formula = paper_image_steps()
        steps: float | None = sum(by_kind.values())
    except ImportError:
        by_kind, steps, formula = {}, None, "needs pyyaml to read config.yaml"

    def rows_of(d: dict[str, Any] | None) -> list[dict[str, Any]]:
        return d["rows"] if d else []

    def val(d: dict[str, Any] | None, prefix: str) -> float | None:
        r = _best(rows_of(d), prefix)
        return r["value"] if r else None

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    cpu_sup = ratio(val(cpu, "sup/project"), val(cpu, "sup/baseline"))
    cpu_aug = ratio(val(cpu, "aug/scl/project"), val(cpu, "aug/scl/baseline"))
    agg = max(
        (
            v
            for v in (val(gpu, p) for p in ("sup/stacked", "switch/", "sup/procs"))
            if v
        ),
        default=None,
    )
    one = val(gpu, "sup/project")

    def fastest(d: dict[str, Any] | None) -> float | None:
        """The best Sup training throughput: one model or a stack's aggregate."""
        paths = ("sup/project", "sup/stacked", "switch/", "sup/procs")
        return max((v for v in (val(d, p) for p in paths) if v), default=None)

    def project(d: dict[str, Any] | None) -> tuple[float, float, float] | None:
        """Hours of CE steps at the best Sup rate plus SupCon image-views at
        the best SCL pre-training rate: each kind at its own measured rate."""
        ce, scl = fastest(d), val(d, "scl/project")
        if not (by_kind and ce and scl):
            return None
        h_ce, h_scl = by_kind["ce"] / ce / 3600, by_kind["supcon"] / scl / 3600
        return h_ce + h_scl, h_ce, h_scl

    gpu_hours = project(gpu)
    hours = gpu_hours[0] if gpu_hours else None
    rss = {k: val(d, "rss/") for k, (_, d) in newest.items()}
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python benchmarks/bench_train.py --report` from "
        "`benchmarks/results/*.json` (the newest file per device); do not edit "
        "by hand. What is measured and how: benchmarks/README.md. Throughputs "
        "are images/s (image-views/s for SCL); ratios are within one run.",
        "",
        "## Targets",
        "",
        "| target | measured | status |",
        "| --- | --- | --- |",
        f"| CPU Sup training: project >= {TARGET_CPU_SUP}x baseline | "
        f"{_x(cpu_sup)} | {_status(cpu_sup, (cpu_sup or 0) >= TARGET_CPU_SUP)} |",
        f"| CPU SCL two-view augmentation: project >= {TARGET_CPU_SCL_AUG}x "
        f"baseline | {_x(cpu_aug)} | "
        f"{_status(cpu_aug, (cpu_aug or 0) >= TARGET_CPU_SCL_AUG)} |",
        f"| GPU aggregate over K stacked seeds >= {TARGET_GPU_AGG:,.0f} img/s | "
        f"{_n(agg)} | {_status(agg, (agg or 0) >= TARGET_GPU_AGG)} |",
        f"| GPU aggregate >= {TARGET_GPU_VS_ONE}x one model (its best configuration) | "
        f"{_x(ratio(agg, one))} | "
        f"{_status(ratio(agg, one), (ratio(agg, one) or 0) >= TARGET_GPU_VS_ONE)} |",
        f"| Paper grid <= {TARGET_GPU_HOURS:.0f} GPU-hours at the best throughput | "
        f"{'' if hours is None else f'{hours:,.1f} h'} | "
        f"{_status(hours, (hours or 1e9) <= TARGET_GPU_HOURS)} |",
    ]
    for dev in ("cpu", "cuda"):
        r = rss.get(dev)
        lines.append(
            f"| Peak RSS of a quick-scale training job <= {TARGET_RSS_GIB:.0f} GiB "
            f"({dev}) | {'' if r is None else f'{r:.2f} GiB'} | "
            f"{_status(r, (r or 0) <= TARGET_RSS_GIB)} |"
        )
    lines += ["", "## Paper grid", ""]
    if steps:
        lines += [
            f"Training image-steps: **{steps / 1e9:.2f}e9** = {formula}.",
            "",
            f"Projected per kind of step at its own best measured rate: "
            f"{by_kind['ce'] / 1e9:.2f}e9 cross-entropy steps (Sup, SCL heads, "
            "One-Shot fine-tunes) at the best Sup training throughput (one model "
            f"or a stack's aggregate) and {by_kind['supcon'] / 1e9:.2f}e9 SupCon "
            "image-views at the best SCL pre-training throughput (one model: "
            "stacked SCL pre-training is implemented but not measured on a GPU).",
            "",
            "No GPU was at hand for the one-loop refactor (issue 12): the GPU "
            "rates below are the earlier H200 measurements, not re-measured.",
            "",
        ]
        for dev, d in (("cpu", cpu), ("cuda", gpu)):
            got = project(d)
            unit = "GPU-hours" if dev == "cuda" else "hours of one CPU job"
            lines.append(
                f"* {dev}: "
                + (
                    "not measured yet"
                    if got is None
                    else f"CE {fastest(d):,.0f} img/s -> {got[1]:,.1f} h, SupCon "
                    f"{val(d, 'scl/project'):,.0f} views/s -> {got[2]:,.1f} h: "
                    f"{got[0]:,.1f} {unit}"
                )
            )
    else:
        lines.append(f"Not computed: {formula}.")
    for dev, title in (("cpu", "CPU"), ("cuda", "GPU (CUDA)")):
        lines += ["", f"## {title}", ""]
        if dev not in newest:
            lines.append(
                "Not measured yet: run `bash benchmarks/gpu_check.sh` on a GPU "
                "machine and copy its JSON into benchmarks/results/."
                if dev == "cuda"
                else "Not measured yet."
            )
            continue
        path, d = newest[dev]
        m = d["machine"]
        gpu_name = f"{m['gpu']}, host " if m["gpu"] else ""
        lines += [
            f"`{path.name}`: {gpu_name}CPU {m['cpu']} ({m['cores']} cores, "
            f"torch threads: {m['torch_threads']}); torch {m['torch']}, torchvision "
            f"{m['torchvision'] or 'absent'}, Python {m['python']}; {d['date']}"
            + ("; --quick (partial timings scaled where noted)" if d["quick"] else ""),
            "",
            *_device_table(d),
        ]
    lines += _arch_section(files)
    lines += _logging_section(files)
    sys.path.insert(0, str(Path(__file__).parent))  # bench_quick, beside this
    from bench_quick import quick_section

    lines += quick_section(files)
    dest.write_text("\n".join(lines) + "\n")


def _newest_section(
    files: list[Path], section: str, needs: str | None = None
) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Per device, the newest ``--only <section>`` run (holding ``needs``)."""
    newest: dict[str, tuple[Path, dict[str, Any]]] = {}
    for f in files:
        data = json.loads(f.read_text())
        if section in (data.get("only") or []) and (needs is None or needs in data):
            dev = data["device"]
            if dev not in newest or data["date"] > newest[dev][1]["date"]:
                newest[dev] = (f, data)
    return newest


def _logging_section(files: list[Path]) -> list[str]:
    """The newest ``--only logging`` run per device: curves logged vs not."""
    newest = _newest_section(files, "logging", "logging_ratio")
    if not newest:
        return []
    lines = [
        "",
        "## Training curves (logging overhead)",
        "",
        "`python benchmarks/bench_train.py --device cpu --only logging`: the "
        "wall time of one quick-scale-like training job (Sup / GMP 50%, "
        "1,000 images, WRN-16-2, batch 128, bf16, 2 epochs = 16 steps, then "
        "the test evaluation) with its training curves logged as the quick "
        "scale does (a step row every 2 steps to TensorBoard and the CSV) "
        "and without (epoch rows only, no TensorBoard, no CSV); the two "
        "interleaved, after one untimed job each. On a shared host read the "
        "ratios.",
    ]
    for dev in sorted(newest):
        path, d = newest[dev]
        m, r = d["machine"], d["logging_ratio"]
        rows = {x["id"]: x for x in d["rows"]}
        lines += [
            "",
            f"`{path.name}` ({dev}): commit {d.get('commit') or 'unknown'}; "
            f"CPU {m['cpu']} ({m['cores']} cores, torch threads: "
            f"{m['torch_threads']}){'; GPU ' + m['gpu'] if m['gpu'] else ''}; "
            f"torch {m['torch']}; {d['date']}"
            + (f"; load average {d['load_avg'][0]:.1f}" if d.get("load_avg") else ""),
            "",
            "| case | median s per job | range | median CPU s | jobs |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for case in ("on", "off"):
            row = rows.get(f"logging/{case}")
            if row:
                lo, hi = min(row["rounds"]), max(row["rounds"])
                used = (
                    f"{statistics.median(row['cpu_s']):.2f}" if "cpu_s" in row else ""
                )
                lines.append(
                    f"| {row['label']} | {row['value']:.2f} | {lo:.2f}-{hi:.2f} "
                    f"| {used} | {len(row['rounds'])} |"
                )
        lo, hi = min(r["paired"]), max(r["paired"])
        lines += [
            "",
            f"Logged / not: **{r['of_medians']:.3f}** (ratio of medians); "
            f"median of the {len(r['paired'])} paired ratios "
            f"{r['median_paired']:.3f} (range {lo:.3f}-{hi:.3f})"
            + (
                f"; CPU seconds of the job's process, ratio of medians "
                f"**{r['cpu_of_medians']:.3f}** (less moved by other jobs' load)."
                if "cpu_of_medians" in r
                else "."
            ),
        ]
    return lines


def _arch_section(files: list[Path]) -> list[str]:
    """The newest ``--only arch`` run per device: WRN-16-2 vs ResNet-18."""
    newest = _newest_section(files, "arch")
    if not newest:
        return []
    lines = [
        "",
        "## Architectures (model.arch)",
        "",
        "`python benchmarks/bench_train.py --device cpu --only arch`: one Sup "
        "training step (as `sup/project`) and inference (the predict rule's "
        "`prunelens.evaluate.predict`) per architecture at the same batch "
        "size, the four cases interleaved, each the median of its rounds "
        "(range in brackets). Interleaving spreads other jobs' load on a "
        "shared host over the four cases, so compare the ratio row; the "
        "absolute rates hold only for that host at that load.",
    ]
    for dev in sorted(newest):
        path, d = newest[dev]
        m = d["machine"]
        rows = {r["id"]: r for r in d["rows"]}
        lines += [
            "",
            f"`{path.name}` ({dev}): commit {d.get('commit') or 'unknown'}; "
            f"CPU {m['cpu']} ({m['cores']} cores, torch threads: "
            f"{m['torch_threads']}){'; GPU ' + m['gpu'] if m['gpu'] else ''}; "
            f"torch {m['torch']}; {d['date']}; batch {d.get('arch_batch')}"
            + (f"; load average {d['load_avg'][0]:.1f}" if d.get("load_avg") else ""),
            "",
            "| architecture | training img/s | inference img/s |",
            "| --- | ---: | ---: |",
        ]

        def rate(kind: str, name: str, rows: dict[str, Any] = rows) -> float | None:
            row = rows.get(f"arch/{kind}/{name}")
            return row["value"] if row else None

        def shown(kind: str, name: str, rows: dict[str, Any] = rows) -> str:
            row = rows.get(f"arch/{kind}/{name}")
            if not row:
                return ""
            lo, hi = min(row["rounds"]), max(row["rounds"])
            return f"{row['value']:,.1f} ({lo:,.1f}-{hi:,.1f})"

        for name in ARCH_CASES:
            lines.append(
                f"| {name} | {shown('train', name)} | {shown('infer', name)} |"
            )
        a, b = ARCH_CASES
        ratios = [_x(_ratio(rate(k, a), rate(k, b))) for k in ("train", "infer")]
        lines.append(f"| {a} / {b} | {ratios[0]} | {ratios[1]} |")
        for s in d.get("skipped", []):
            lines.append(f"| {s['id']} | skipped | {s['why']} |")
    return lines


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _x(v: float | None) -> str:
    return "" if v is None else f"{v:.2f}x"


def _n(v: float | None) -> str:
    return "" if v is None else f"{v:,.0f} img/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--quick", action="store_true", help="CPU: time fractions")
    parser.add_argument("--out", type=Path, help="result folder (default: results/)")
    parser.add_argument(
        "--threads", type=int, help="torch CPU threads (default: 1 on CPU)"
    )
    parser.add_argument(
        "--budget-s", type=float, default=600.0, help="skip what would run past this"
    )
    parser.add_argument(
        "--report", action="store_true", help="only rebuild BENCHMARKS.md"
    )
    parser.add_argument(
        "--only",
        type=lambda v: v.split(","),
        help="run only these extra sections (arch: WRN-16-2 vs ResNet-18 training "
        "and inference, any device; logging: a quick-scale job with its "
        "training curves logged vs not, any device; CUDA: compile1: one model "
        "compiled; procs: "
        "concurrent processes) into <device>-<date>-<sections>.json; the "
        "report merges the rows of every file of a device's newest date and "
        "shows the newest arch run per device in its own section",
    )
    parser.add_argument(
        "--ks",
        type=lambda v: [int(k) for k in v.split(",")],
        help="stack sizes K to time, comma-separated (default: 1,16,32,64 on "
        "CUDA, 1,2 on CPU); the switches and compile use the largest",
    )
    args = parser.parse_args()
    if args.report:
        write_report([RESULTS], REPORT)
        print(f"wrote {REPORT}")
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch finds no CUDA device")
    start = time.perf_counter()
    path = measure(args)
    # Beside a result written elsewhere (a GPU run's --out), a report of it
    # and of the repository's results; the repository's own report otherwise.
    dest = REPORT if args.out is None else args.out / "BENCHMARKS.md"
    write_report([RESULTS, path.parent], dest)
    print(f"wrote {path} and {dest} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
