"""CPU versus CUDA: parity of the library's stages and GPU throughput.

Run on a machine with a GPU from the repository root (no Snakemake needed):

    PYTHONPATH=src python3 benchmarks/gpu_stages.py [out.json]

Prints one JSON document: per stage the largest weight and logit differences
between a CPU and a CUDA run of the same seed, and training throughput at
the paper's batch sizes (the training rules' `runtime` estimates use these).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from prunelens.data import CLASSES
from prunelens.evaluate import predict
from prunelens.models import load_model
from prunelens.study import arch_params
from prunelens.train import (
    fit_linear_head,
    oneshot_finetune,
    pretrain_supcon,
    train_supervised,
)

REPO = Path(__file__).resolve().parents[1]
CFG = yaml.safe_load((REPO / "config.yaml").read_text())
DS = CFG["data"]["dataset"]
NORM = {"mean": CFG["data"]["mean"][DS], "std": CFG["data"]["std"][DS]}
ARCH = arch_params(CFG["model"])


def make_npz(path: Path, n_train: int, n_test: int) -> Path:
    rng = np.random.default_rng(0)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(n) % 10
        base = (labels[:, None] * 25).astype(np.float64)
        img = base[:, None, None, :] + rng.normal(0, 40, (n, 32, 32, 3))
        return np.clip(img, 0, 255).astype(np.uint8), labels.astype(np.int64)

    tr, trl = split(n_train)
    te, tel = split(n_test)
    np.savez(
        path,
        train_images=tr,
        train_labels=trl,
        train_index=np.arange(n_train),
        test_images=te,
        test_labels=tel,
        test_index=np.arange(n_test),
        classes=np.array(CLASSES),
    )
    return path


def hp(section: dict, **over) -> dict:
    out = json.loads(json.dumps(section))
    out.update(over)
    return out


def sup(data: Path, out: Path, device: str, epochs: int, batch: int) -> dict:
    (metrics,) = train_supervised(
        data=data,
        model_outs=[out / "model.pt"],
        metrics_outs=[out / "metrics.json"],
        arch=ARCH,
        hp=hp(CFG["sup"], epochs=epochs, batch_size=batch, lr=0.05, milestones=[]),
        norm=NORM,
        gmp=None,
        sparsity=0,
        seeds=[0],
        schedule="dense",
        settings={"device": device},
    )
    return metrics


def scl(data: Path, out: Path, device: str, epochs: int, batch: int) -> dict:
    (pre,) = pretrain_supcon(
        data=data,
        encoder_outs=[out / "encoder.pt"],
        arch=ARCH,
        hp=hp(CFG["scl"]["pretrain"], epochs=epochs, batch_size=batch),
        norm=NORM,
        gmp=None,
        sparsity=0,
        seeds=[0],
        schedule="dense",
        settings={"device": device},
    )
    (head,) = fit_linear_head(
        data=data,
        encoders=[out / "encoder.pt"],
        model_outs=[out / "model.pt"],
        metrics_outs=[out / "metrics.json"],
        hp=hp(CFG["scl"]["head"], epochs=epochs, batch_size=256, milestones=[]),
        augment_cfg=CFG["sup"]["augment"],
        norm=NORM,
        gmp=None,
        sparsity=0,
        seeds=[0],
        schedule="dense",
        settings={"device": device},
    )
    return {"pretrain": pre, "head": head}


def oneshot(data: Path, dense: Path, out: Path, device: str, epochs: int) -> dict:
    (metrics,) = oneshot_finetune(
        data=data,
        dense_models=[dense],
        model_outs=[out / "model.pt"],
        metrics_outs=[out / "metrics.json"],
        hp=hp(CFG["oneshot"], epochs=epochs),
        augment_cfg=CFG["sup"]["augment"],
        norm=NORM,
        method="sup",
        sparsity=90,
        seeds=[0],
        settings={"device": device},
    )
    return metrics


def weights_diff(a: Path, b: Path) -> float:
    sa, sb = (load_model(p, "cpu")[0].state_dict() for p in (a, b))
    return max(
        float((sa[k].float() - sb[k].float()).abs().max()) for k in sa if sa[k].numel()
    )


def logits(model_path: Path, data: Path, device: str, tf32: bool) -> np.ndarray:
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    d = np.load(data)
    model, _ = load_model(model_path, device)
    out, _ = predict(
        model, d["test_images"], NORM["mean"], NORM["std"], device=device, batch=256
    )
    return out


def parity(tmp: Path) -> dict:
    data = make_npz(tmp / "parity.npz", 320, 200)
    res: dict = {}
    for dev in ("cpu", "cuda"):
        sup(data, tmp / f"sup-{dev}", dev, epochs=2, batch=32)
        scl(data, tmp / f"scl-{dev}", dev, epochs=1, batch=64)
        oneshot(data, tmp / f"sup-{dev}/model.pt", tmp / f"os-{dev}", dev, epochs=1)
    for name in ("sup", "scl", "os"):
        a, b = tmp / f"{name}-cpu", tmp / f"{name}-cuda"
        ma, mb = (json.loads((p / "metrics.json").read_text()) for p in (a, b))
        res[name] = {
            "max_abs_weight_diff": weights_diff(a / "model.pt", b / "model.pt"),
            "test_acc_cpu": ma["test_acc"],
            "test_acc_cuda": mb["test_acc"],
            "loss_epoch1_cpu": ma["history"][0].get("loss"),
            "loss_epoch1_cuda": mb["history"][0].get("loss"),
        }
    # evaluation only: one CPU-trained model, evaluated on both devices
    model = tmp / "sup-cpu/model.pt"
    ref = logits(model, data, "cpu", tf32=False)
    for tf32 in (True, False):
        got = logits(model, data, "cuda", tf32=tf32)
        res[f"predict_tf32_{tf32}"] = {
            "max_abs_logit_diff": float(np.abs(got - ref).max()),
            "max_rel_logit_diff": float(
                np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-12)
            ),
            "argmax_agreement": float((got.argmax(1) == ref.argmax(1)).mean()),
        }
    return res


def throughput(tmp: Path) -> dict:
    data = make_npz(tmp / "speed.npz", 10000, 1000)
    res = {}
    t = time.perf_counter()
    m = sup(data, tmp / "speed-sup", "cuda", epochs=2, batch=128)
    res["sup_b128"] = {
        "img_per_s": m["train_images_per_s"],
        "wall_s": time.perf_counter() - t,
    }
    t = time.perf_counter()
    m = scl(data, tmp / "speed-scl", "cuda", epochs=2, batch=1024)
    res["scl_pretrain_b1024"] = {"views_per_s": m["pretrain"]["image_views_per_s"]}
    res["scl_head_b256"] = {"img_per_s": m["head"]["train_images_per_s"]}
    res["scl_wall_s"] = time.perf_counter() - t
    t = time.perf_counter()
    m = oneshot(data, tmp / "speed-sup/model.pt", tmp / "speed-os", "cuda", epochs=2)
    res["oneshot_b128"] = {
        "img_per_s": m["train_images_per_s"],
        "wall_s": time.perf_counter() - t,
    }
    return res


def sharing(tmp: Path, n: int) -> dict:
    """n Sup trainings at once on the one GPU: per-process and total images/s."""
    data = tmp / "speed.npz"
    code = (
        "import sys, json; sys.path.insert(0, {!r}); sys.path.insert(0, {!r});"
        "from gpu_check import sup; from pathlib import Path;"
        "m = sup(Path({!r}), Path(sys.argv[1]), 'cuda', 2, 128);"
        "print(json.dumps(m['train_images_per_s']))"
    ).format(str(REPO / "src"), str(Path(__file__).parent), str(data))
    t = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp / f"share{n}-{i}")],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    rates = [float(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    return {
        "per_process": rates,
        "total": sum(rates),
        "wall_s": time.perf_counter() - t,
    }


def main() -> None:
    out: dict = {"torch": torch.__version__, "cuda": torch.cuda.is_available()}
    if not torch.cuda.is_available():
        print(json.dumps(out))
        sys.exit("no CUDA device")
    out["gpu"] = torch.cuda.get_device_name(0)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name, fn in (
            ("parity", lambda: parity(tmp)),
            ("throughput", lambda: throughput(tmp)),
            ("share1", lambda: sharing(tmp, 1)),
            ("share2", lambda: sharing(tmp, 2)),
            ("share4", lambda: sharing(tmp, 4)),
        ):
            t = time.perf_counter()
            try:
                out[name] = fn()
            except Exception as e:  # report and go on: one run, limited time
                out[name] = {"error": repr(e)}
            out[f"{name}_s"] = round(time.perf_counter() - t, 1)
            print(json.dumps({name: out[name]}), flush=True)
    text = json.dumps(out, indent=2)
    print(text)
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(text)


if __name__ == "__main__":
    main()
