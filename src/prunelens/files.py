"""One checked loader per file contract (README "File formats other stages read").

Every stage reads the workflow's own files through these functions: models
(``model.pt``), SupCon encoders (``encoder.pt``), ``metrics.json``,
predictions, PIE tables, Q-Score and prediction-depth scores, per-model depth
files and the UMAP embeddings. Each loader checks what its contract says
(arrays or columns present, their dtypes and shapes, consistent lengths, the
``index`` of the examples, values in range) and raises one
:class:`FileContractError` whose message is one line naming the file, what is
wrong and the command that rebuilds it::

    results/pie/sup/gmp/s50.csv: 50 rows, but the test split has 200 examples;
    rebuild it with: snakemake results/pie/sup/gmp/s50.csv --forcerun vote_pies

Nothing is ever unpickled: ``.npz`` files load with ``allow_pickle=False`` and
torch files with ``weights_only=True`` (tensors and plain values only).
"""

from __future__ import annotations

import json
import pickle
import re
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from prunelens.data import DATASETS, DataError
from prunelens.study import METHODS, SCHEDULES

if TYPE_CHECKING:
    from prunelens.models import Classifier

__all__ = [
    "FileContractError",
    "Predictions",
    "contract_error",
    "load_depth",
    "load_embeddings",
    "load_encoder",
    "load_layers",
    "load_metrics",
    "load_model",
    "load_pie",
    "load_predictions",
    "load_scores",
    "producing_rule",
    "read_json",
    "read_npz",
    "rebuild_command",
    "same_examples",
]

PathLike = str | Path
# Labels' bound when a reader is not told the data set's classes: the largest.
MAX_CLASSES = max(d.n_classes for d in DATASETS.values())


class FileContractError(DataError):
    """A file a job reads breaks its contract; the message is one line."""


# The rule that writes each of the workflow's files, from the end of its path
# (workflow/rules/*.smk). First match wins: One-Shot models before the
# per-method training rules.
_PRODUCERS: tuple[tuple[str, str], ...] = (
    (r"models/scl/[^/]+/s\d+/seed\d+/encoder\.pt", "pretrain_supcon"),
    (r"models/[^/]+/oneshot/s\d+/seed\d+/(model\.pt|metrics\.json)", "prune_oneshot"),
    (r"models/sup/[^/]+/s\d+/seed\d+/(model\.pt|metrics\.json)", "train_supervised"),
    (r"models/scl/[^/]+/s\d+/seed\d+/(model\.pt|metrics\.json)", "fit_linear_head"),
    (r"predictions/[^/]+/[^/]+/s\d+/seed\d+\.npz", "predict"),
    (r"pie/[^/]+/[^/]+/s\d+\.csv", "vote_pies"),
    (r"scores/q/[^/]+/[^/]+/s\d+\.csv", "score_q"),
    (r"scores/pd/[^/]+/[^/]+/s\d+\.csv", "probe_depth"),
    (r"depth/[^/]+/[^/]+/s\d+/seed\d+\.npz", "probe_depth"),
    (r"umap/embeddings\.csv", "embed_umap"),
    (r"reference/(arrays\.npz|meta\.json)", "reference"),
)


def producing_rule(path: PathLike) -> str | None:
    """The workflow rule that writes ``path``, judged from its path (None if
    the path is not one of the workflow's)."""
    text = "/" + Path(path).as_posix()
    for pattern, rule in _PRODUCERS:
        if re.search(rf"/{pattern}$", text):
            return rule
    return None


def rebuild_command(path: PathLike, rule: str | None = None) -> str:
    """``snakemake <path> --forcerun <rule>``: the rule from the path, else
    ``rule``; ``--force`` (the path's own job) when neither is known."""
    rule = producing_rule(path) or rule
    return f"snakemake {path} " + (f"--forcerun {rule}" if rule else "--force")


def contract_error(
    path: PathLike, problem: str, rule: str | None = None
) -> FileContractError:
    """The one-line error for ``path``: what is wrong and how to rebuild it."""
    text = f"{path}: {problem}; rebuild it with: {rebuild_command(path, rule)}"
    return FileContractError(" ".join(text.splitlines()))


def _first_line(exc: BaseException, limit: int = 160) -> str:
    lines = str(exc).strip().splitlines()
    # the first sentence: torch appends advice on reporting bugs
    text = lines[0].split(". ")[0] if lines else ""
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _missing(path: Path, rule: str | None) -> None:
    if not path.exists():
        raise contract_error(path, "file not found", rule)
    if not path.is_file():
        raise contract_error(path, "not a file", rule)


# -------------------------------------------------------------------- readers


def read_npz(
    path: PathLike,
    keys: Sequence[str],
    rule: str | None,
    contract: Sequence[str] = (),
) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of an ``.npz`` file (which must hold all of
    ``contract`` too), never unpickling anything."""
    path = Path(path)
    _missing(path, rule)
    try:
        with np.load(path, allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise contract_error(
                    path, "a single .npy array, not an .npz archive", rule
                )
            absent = [k for k in dict.fromkeys([*contract, *keys]) if k not in z.files]
            if absent:
                raise contract_error(
                    path, f"missing arrays {absent} (has {sorted(z.files)})", rule
                )
            return {k: z[k] for k in keys}
    except FileContractError:
        raise
    except ValueError as exc:
        # numpy's text would advise allow_pickle=True: never do that
        what = "object arrays" if "Object arrays" in str(exc) else "not an .npz archive"
        raise contract_error(
            path, f"unreadable ({what}; pickled data is never loaded)", rule
        ) from exc
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as exc:
        raise contract_error(
            path, f"unreadable .npz archive ({_first_line(exc)})", rule
        ) from exc


def read_json(path: PathLike, rule: str | None) -> Any:
    path = Path(path)
    _missing(path, rule)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise contract_error(
            path, f"not valid JSON, truncated? ({exc.msg} at line {exc.lineno})", rule
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise contract_error(path, f"unreadable ({_first_line(exc)})", rule) from exc


def _read_torch(path: PathLike, rule: str | None, device: str = "cpu") -> Any:
    import torch

    path = Path(path)
    _missing(path, rule)
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's text would advise weights_only=False: never do that
        raise contract_error(
            path,
            "holds objects other than tensors and plain values (only weights are "
            "ever loaded)",
            rule,
        ) from exc
    except Exception as exc:  # torch raises many types for a bad file
        raise contract_error(
            path, f"not a readable torch file ({_first_line(exc)})", rule
        ) from exc


def _read_csv(
    path: PathLike, columns: Mapping[str, str], rule: str | None
) -> pd.DataFrame:
    """A CSV with ``columns`` (name -> ``int``, ``float``, ``bool`` or
    ``str``) present, of that kind and with no empty cell (NaN is allowed in
    ``float`` columns only), and at least one row."""
    path = Path(path)
    _missing(path, rule)
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError as exc:
        raise contract_error(path, "empty file", rule) from exc
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise contract_error(
            path, f"unreadable CSV ({_first_line(exc)})", rule
        ) from exc
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise contract_error(
            path, f"missing columns {absent} (has {list(frame.columns)})", rule
        )
    if frame.empty:
        raise contract_error(path, "no rows", rule)
    for col, kind in columns.items():
        s = frame[col]
        ok = {
            "int": pd.api.types.is_integer_dtype(s),
            "float": pd.api.types.is_numeric_dtype(s)
            and not pd.api.types.is_bool_dtype(s),
            "bool": pd.api.types.is_bool_dtype(s),
            "str": pd.api.types.is_string_dtype(s) and not s.isna().any(),
        }[kind]
        if not ok:
            raise contract_error(
                path,
                f"column {col!r} is not {kind} (read as {s.dtype}; an empty or "
                "cut cell?)",
                rule,
            )
    return frame


# ------------------------------------------------------------------- checks


class _Problems:
    """Collects what is wrong with one file; raises them as one error."""

    def __init__(self, path: PathLike, rule: str | None) -> None:
        self.path, self.rule, self.found = path, rule, []

    def check(self, ok: Any, problem: str | Callable[[], str]) -> bool:
        if not ok:
            self.found.append(problem if isinstance(problem, str) else problem())
        return bool(ok)

    def array(self, name: str, a: np.ndarray, dtype: Any, shape: tuple) -> bool:
        """``a`` has ``dtype`` and ``shape`` (None: any length on that axis)."""
        ok = a.dtype == np.dtype(dtype) and a.ndim == len(shape)
        ok = ok and all(
            w is None or w == g for w, g in zip(shape, a.shape, strict=True)
        )
        want = "x".join("N" if w is None else str(w) for w in shape) or "scalar"
        return self.check(
            ok,
            lambda: (
                f"{name} is {a.dtype} {a.shape}, expected {np.dtype(dtype)} ({want})"
            ),
        )

    def within(
        self, name: str, a: Any, low: float, high: float, *, closed=True
    ) -> None:
        v = np.asarray(a, dtype=np.float64)
        fin = v[np.isfinite(v)]
        inside = (fin >= low).all() and (
            (fin <= high) if closed else (fin < high)
        ).all()
        bracket = "]" if closed else ")"
        self.check(
            inside and len(fin) == v.size,
            lambda: (
                f"{name} outside [{low:g}, {high:g}{bracket} "
                f"(min {np.nanmin(v):g}, max {np.nanmax(v):g}, "
                f"{v.size - len(fin)} not finite)"
            ),
        )

    def raise_any(self) -> None:
        if self.found:
            raise contract_error(self.path, "; ".join(self.found), self.rule)


def _check_index(
    p: _Problems,
    index: np.ndarray,
    want: np.ndarray | None,
    n_examples: int | None,
    name: str = "index",
) -> None:
    """``index``: increasing test-split ids, equal to ``want`` (the test split,
    or what the other files of the stage hold) or ``n_examples`` long."""
    if want is not None:
        want = np.asarray(want)
        if len(index) != len(want):
            p.check(
                False, f"{len(index)} rows, but the test split has {len(want)} examples"
            )
        else:
            p.check(
                np.array_equal(index, want), f"{name} is not the test split's examples"
            )
        return
    if n_examples is not None and len(index) != n_examples:
        p.check(
            False, f"{len(index)} rows, but the test split has {n_examples} examples"
        )
    ok = len(index) > 0 and index.min() >= 0 and (np.diff(index) > 0).all()
    p.check(ok, f"{name} is not increasing non-negative example ids")


def _int_range(p: _Problems, name: str, a: np.ndarray, high: int) -> None:
    p.check(
        len(a) == 0 or (a.min() >= 0 and a.max() < high),
        lambda: f"{name} outside 0..{high - 1} (min {a.min()}, max {a.max()})",
    )


def same_examples(
    files: Sequence[tuple[PathLike, np.ndarray]],
    what: str = "examples",
    rule: str | None = None,
) -> np.ndarray:
    """The array (``index``, or what ``what`` names) that ``files`` ((path,
    array) pairs read by one stage) share. The first file that differs from
    the array most of them hold (ties: the longest) is named in the error."""
    if not files:
        raise ValueError("no files to compare")
    groups: list[tuple[np.ndarray, list[PathLike]]] = []
    for path, values in files:
        for ref, members in groups:
            if np.array_equal(ref, values):
                members.append(path)
                break
        else:
            groups.append((np.asarray(values), [path]))
    ref, members = max(groups, key=lambda g: (len(g[1]), len(g[0])))
    for path, values in files:
        if not np.array_equal(values, ref):
            problem = (
                f"{len(values)} rows, but {members[0]} has {len(ref)}"
                if len(values) != len(ref)
                else f"its {what} differ from those of {members[0]}"
            )
            raise contract_error(path, problem, rule)
    return ref


# ------------------------------------------------------------- torch files


def _check_state(
    p: _Problems, state: Any, arch: Any, build: Callable[..., Any]
) -> None:
    """``state`` (a state_dict) has exactly the tensors ``build(arch)`` has."""
    import torch

    if not p.check(isinstance(arch, dict), "arch is not a dict"):
        return
    try:
        with torch.device("meta"):  # shapes only: no memory, no RNG draws
            want = build(arch).state_dict()
    except (TypeError, ValueError) as exc:
        p.check(False, f"arch {arch} builds no network ({exc})")
        return
    if not p.check(
        isinstance(state, dict)
        and all(isinstance(v, torch.Tensor) for v in state.values()),
        "state_dict is not a dict of tensors",
    ):
        return
    absent = [k for k in want if k not in state]
    extra = [k for k in state if k not in want]
    p.check(
        not absent, lambda: f"state_dict lacks {len(absent)} tensors, e.g. {absent[0]}"
    )
    p.check(
        not extra,
        lambda: f"state_dict has {len(extra)} unknown tensors, e.g. {extra[0]}",
    )
    for k, w in want.items():
        got = state.get(k)
        # any float precision (a float64 run saves float64), never ints for floats
        kind = "floating" if w.is_floating_point() else str(w.dtype)
        if got is not None and (
            got.shape != w.shape or got.is_floating_point() != w.is_floating_point()
        ):
            p.check(
                False,
                f"tensor {k} is {got.dtype} {tuple(got.shape)}, expected "
                f"{kind} {tuple(w.shape)} for arch {arch}",
            )
            break


def _network_file(
    path: PathLike,
    rule: str | None,
    keys: Sequence[str],
    build: Callable[..., Any],
    device: str = "cpu",
) -> tuple[dict[str, Any], _Problems]:
    """A torch file holding a network (``arch``, ``state_dict``, ``meta`` and
    ``keys``), its tensors those ``build(arch)`` makes; the problems found
    so far, for the caller to add to and raise."""
    state = _read_torch(path, rule, device)
    if not isinstance(state, dict):
        raise contract_error(path, f"holds a {type(state).__name__}, not a dict", rule)
    absent = [k for k in ("arch", "state_dict", "meta", *keys) if k not in state]
    if absent:
        raise contract_error(path, f"missing {absent}", rule)
    p = _Problems(path, rule)
    p.check(isinstance(state["meta"], dict), "meta is not a dict")
    _check_state(p, state["state_dict"], state["arch"], build)
    return state, p


def load_model(
    path: PathLike, device: str = "cpu"
) -> tuple[Classifier, dict[str, Any]]:
    """A saved classifier (``model.pt``: ``arch``, ``state_dict``, ``meta``)
    rebuilt on ``device``; returns (model, meta)."""
    from prunelens.models import build_classifier

    state, p = _network_file(path, None, (), build_classifier, device)
    p.raise_any()
    model = build_classifier(state["arch"]).to(device)
    model.load_state_dict(state["state_dict"])
    return model, state["meta"]


ENCODER_NUMBERS = ("steps", "wall_time_s", "image_views_per_s", "sparsity_measured")


def load_encoder(path: PathLike) -> dict[str, Any]:
    """A SupCon encoder file (``encoder.pt``) on the CPU, checked: ``arch``,
    ``state_dict`` (the encoder's ``arch`` builds), ``meta`` and the pre-training's
    ``steps``, ``wall_time_s``, ``image_views_per_s`` and
    ``sparsity_measured``. The caller builds the encoder (its RNG draws are
    its own)."""
    from prunelens.models import build_encoder

    state, p = _network_file(path, "pretrain_supcon", ENCODER_NUMBERS, build_encoder)
    for k in ENCODER_NUMBERS:
        if p.check(_is_number(state[k]), f"{k} is not a number"):
            high = 1 if k == "sparsity_measured" else np.inf
            p.within(k, state[k], 0, high, closed=high == np.inf)
    p.raise_any()
    return state


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


# ------------------------------------------------------------- metrics.json

# key -> (kind, low, high, closed at high); kind "number", "int", "str", "list"
METRICS_KEYS: dict[str, tuple[str, float, float, bool]] = {
    "test_acc": ("number", 0, 1, True),
    "sparsity_measured": ("number", 0, 1, False),
    "epochs": ("int", 0, np.inf, True),
    "steps": ("int", 0, np.inf, True),
    "wall_time_s": ("number", 0, np.inf, True),
    "train_images_per_s": ("number", 0, np.inf, True),
    "device": ("str", 0, 0, True),
    "torch": ("str", 0, 0, True),
    "history": ("list", 0, 0, True),
}


def load_metrics(path: PathLike) -> dict[str, Any]:
    """A model's ``metrics.json``, its keys (README) present and in range."""
    metrics = read_json(path, None)
    p = _Problems(path, None)
    if not p.check(
        isinstance(metrics, dict),
        f"holds a JSON {type(metrics).__name__}, not an object",
    ):
        p.raise_any()
    absent = [k for k in METRICS_KEYS if k not in metrics]
    p.check(not absent, f"missing keys {absent}")
    for key, (kind, low, high, closed) in METRICS_KEYS.items():
        if key not in metrics:
            continue
        v = metrics[key]
        if kind in ("number", "int"):
            typed = isinstance(v, int) if kind == "int" else _is_number(v)
            if p.check(typed and not isinstance(v, bool), f"{key} is not a {kind}"):
                p.within(key, v, low, high, closed=closed)
        else:
            p.check(
                isinstance(v, {"str": str, "list": list}[kind]),
                f"{key} is not a {'string' if kind == 'str' else 'list'}",
            )
    p.raise_any()
    return metrics


def load_layers(path: PathLike) -> list[dict[str, Any]]:
    """A model's ``metrics.json`` ``layers`` (README), checked: per prunable
    tensor a name, ``numel`` > 0, ``target`` null or in [0, 1] and
    ``measured`` in [0, 1]. A file written before ``layers`` was recorded
    is refused, with the command that rebuilds it."""
    metrics = load_metrics(path)
    layers = metrics.get("layers")
    p = _Problems(path, None)
    if not p.check(
        isinstance(layers, list) and layers,
        "no per-tensor sparsity (layers; older files lack it)",
    ):
        p.raise_any()
    for i, r in enumerate(layers):
        ok = isinstance(r, dict) and {"tensor", "numel", "target", "measured"} <= set(r)
        if not p.check(ok, f"layers[{i}] is not a tensor record"):
            continue
        p.check(isinstance(r["tensor"], str), f"layers[{i}].tensor is not a string")
        p.check(
            isinstance(r["numel"], int) and not isinstance(r["numel"], bool)
            and r["numel"] > 0,
            f"layers[{i}].numel is not a positive integer",
        )  # fmt: skip
        for key in ("target", "measured"):
            v = r[key]
            if v is None and key == "target":
                continue
            if p.check(_is_number(v), f"layers[{i}].{key} is not a number"):
                p.within(f"layers[{i}].{key}", v, 0, 1)
    p.raise_any()
    return layers


# ------------------------------------------------------------- predictions


@dataclass(frozen=True)
class Predictions:
    """One model's predictions file: per test example, in ``index`` order."""

    index: np.ndarray  # (N,) int64 test-split ids
    label: np.ndarray  # (N,) int64 true class
    pred: np.ndarray  # (N,) int64 predicted class (argmax of logits)
    logits: np.ndarray | None = None  # (N, C) float32
    rep: np.ndarray | None = None  # (N, D) float32 representation before any head


PREDICTION_ARRAYS = ("index", "label", "pred", "logits", "rep")


def load_predictions(
    path: PathLike,
    *,
    index: np.ndarray | None = None,
    n_classes: int | None = None,
    arrays: Sequence[str] = PREDICTION_ARRAYS,
) -> Predictions:
    """A predictions ``.npz`` checked: int64 ``index``/``label``/``pred`` (N,),
    float32 ``logits`` (N, C) and ``rep`` (N, D), labels and predictions in
    0..C-1, ``pred`` the argmax of ``logits``, and ``index`` the test split's
    (``index`` when given). C is ``n_classes``, or (None) the width of
    ``logits``, then read whatever ``arrays`` says. ``arrays`` names what to
    read besides ``index``, ``label`` and ``pred`` (every array must exist; a
    population's votes need not read 5 MB of representations per model)."""
    rule = "predict"
    drop_logits = n_classes is None and "logits" not in arrays
    arrays = tuple(arrays) + (("logits",) if drop_logits else ())
    keys = [k for k in PREDICTION_ARRAYS[:3] + arrays if k in PREDICTION_ARRAYS]
    z = read_npz(path, list(dict.fromkeys(keys)), rule, PREDICTION_ARRAYS)
    p = _Problems(path, rule)
    n = len(z["index"]) if z["index"].ndim == 1 else None
    ok = p.array("index", z["index"], np.int64, (None,))
    for name in ("label", "pred"):
        ok &= p.array(name, z[name], np.int64, (n,))
    if n_classes is None:
        logits = z["logits"]
        n_classes = logits.shape[1] if logits.ndim == 2 and logits.shape[1] else 0
        ok &= p.check(n_classes > 0, f"logits is {logits.shape}, expected (N, C)")
    if "logits" in z:
        ok &= p.array("logits", z["logits"], np.float32, (n, n_classes))
    if "rep" in z:
        ok &= p.array("rep", z["rep"], np.float32, (n, None))
    if ok:
        _check_index(p, z["index"], index, None)
        _int_range(p, "label", z["label"], n_classes)
        _int_range(p, "pred", z["pred"], n_classes)
        if "logits" in z:
            p.check(
                np.array_equal(z["pred"], z["logits"].argmax(1)),
                "pred is not the argmax of logits",
            )
    p.raise_any()
    if drop_logits:  # read for C only
        del z["logits"]
    return Predictions(**z)


# ------------------------------------------------------------------ PIE csv

PIE_COLUMNS = {
    "index": "int",
    "label": "int",
    "dense_mode": "int",
    "pruned_mode": "int",
    "pie": "bool",
    "tie": "bool",
}


def load_pie(
    path: PathLike,
    *,
    index: np.ndarray | None = None,
    n_examples: int | None = None,
    n_classes: int | None = None,
) -> pd.DataFrame:
    """A PIE table: one row per test example (``index`` or ``n_examples``
    when the caller knows the split), labels and modes in 0..C-1, and
    ``pie`` exactly where the two modal labels differ."""
    rule = "vote_pies"
    n_classes = n_classes or MAX_CLASSES  # not told: the largest data set's
    frame = _read_csv(path, PIE_COLUMNS, rule)
    p = _Problems(path, rule)
    _check_index(p, frame["index"].to_numpy(), index, n_examples)
    for col in ("label", "dense_mode", "pruned_mode"):
        _int_range(p, col, frame[col].to_numpy(), n_classes)
    p.check(
        (frame["pie"] == (frame["dense_mode"] != frame["pruned_mode"])).all(),
        "pie is not where dense_mode and pruned_mode differ",
    )
    p.raise_any()
    return frame


# -------------------------------------------------------------- scores csv

SCORE_COLUMNS: dict[str, dict[str, str]] = {
    "q": {
        "index": "int",
        "q": "float",
        "z": "float",
        "l1": "float",
        "n_degenerate": "int",
    },
    "pd": {"index": "int", "pd": "float", "pd_baldock": "float"},
}


def load_scores(
    path: PathLike,
    kind: Literal["q", "pd"],
    *,
    index: np.ndarray | None = None,
    n_examples: int | None = None,
) -> pd.DataFrame:
    """A population's per-example scores: Q-Score (``kind="q"``:
    ``index,q,z,l1,n_degenerate``; ``l1`` >= 0, NaN only where every model
    is degenerate) or prediction depth (``kind="pd"``: ``index,pd,pd_baldock``,
    means over models of depths >= 1 and >= 0)."""
    rule = {"q": "score_q", "pd": "probe_depth"}[kind]
    frame = _read_csv(path, SCORE_COLUMNS[kind], rule)
    p = _Problems(path, rule)
    _check_index(p, frame["index"].to_numpy(), index, n_examples)
    if kind == "q":
        p.check((frame["n_degenerate"] >= 0).all(), "n_degenerate is negative")
        l1 = frame["l1"].to_numpy(float)
        p.check(not (l1 < 0).any(), "l1 is negative")
        p.check(
            frame[["q", "z", "l1"]].isna().any(axis=1).eq(frame["l1"].isna()).all(),
            "q, z and l1 are not NaN together",
        )
    else:
        p.within("pd", frame["pd"], 1, np.inf)
        p.within("pd_baldock", frame["pd_baldock"], 0, np.inf)
    p.raise_any()
    return frame


# -------------------------------------------------------- per-model depth

DEPTH_ARRAYS = ("index", "label", "final_pred", "probe_preds", "pd", "pd_baldock")


def load_depth(
    path: PathLike,
    *,
    index: np.ndarray | None = None,
    n_classes: int | None = None,
) -> dict[str, np.ndarray]:
    """One model's depth ``.npz``: int64 ``index``/``label``/``final_pred``/
    ``pd``/``pd_baldock`` (N,), int8 ``probe_preds`` (L, N) in 0..C-1,
    ``pd`` in 1..L and ``pd_baldock`` in 0..L."""
    rule = "probe_depth"
    n_classes = n_classes or MAX_CLASSES  # not told: the largest data set's
    z = read_npz(path, DEPTH_ARRAYS, rule)
    p = _Problems(path, rule)
    n = len(z["index"]) if z["index"].ndim == 1 else None
    ok = p.array("index", z["index"], np.int64, (None,))
    for name in ("label", "final_pred", "pd", "pd_baldock"):
        ok &= p.array(name, z[name], np.int64, (n,))
    ok &= p.array("probe_preds", z["probe_preds"], np.int8, (None, n))
    if ok:
        layers = z["probe_preds"].shape[0]
        _check_index(p, z["index"], index, None)
        p.check(layers > 0, "probe_preds has no probes")
        for name in ("label", "final_pred"):
            _int_range(p, name, z[name], n_classes)
        _int_range(p, "probe_preds", z["probe_preds"].ravel(), n_classes)
        p.within("pd", z["pd"], 1, layers)
        p.within("pd_baldock", z["pd_baldock"], 0, layers)
    p.raise_any()
    return z


# ------------------------------------------------------------------- UMAP

EMBEDDING_COLUMNS = {
    "method": "str",
    "schedule": "str",
    "sparsity": "int",
    "index": "int",
    "x": "float",
    "y": "float",
    "mode": "int",
    "pie": "bool",
}
POPULATION = ["method", "schedule", "sparsity"]


def load_embeddings(path: PathLike, n_classes: int | None = None) -> pd.DataFrame:
    """The UMAP table: known methods and schedules, finite ``x``/``y``,
    ``mode`` in 0..C-1, and the same increasing example ids for every
    population."""
    rule = "embed_umap"
    n_classes = n_classes or MAX_CLASSES  # not told: the largest data set's
    frame = _read_csv(path, EMBEDDING_COLUMNS, rule)
    p = _Problems(path, rule)
    bad = sorted(set(frame["method"]) - set(METHODS))
    p.check(not bad, f"unknown methods {bad}")
    bad = sorted(set(frame["schedule"]) - set(SCHEDULES))
    p.check(not bad, f"unknown schedules {bad}")
    p.within("sparsity", frame["sparsity"], 0, 100, closed=False)
    p.within("x", frame["x"], -np.inf, np.inf)
    p.within("y", frame["y"], -np.inf, np.inf)
    _int_range(p, "mode", frame["mode"].to_numpy(), n_classes)
    ids = {
        key: g["index"].to_numpy() for key, g in frame.groupby(POPULATION, sort=False)
    }
    first_key, first = next(iter(ids.items()))
    for key, index in ids.items():
        label = "/".join(map(str, key))
        if not p.check(
            len(index) and index.min() >= 0 and (np.diff(index) > 0).all(),
            f"{label}: index is not increasing non-negative example ids",
        ) or not p.check(
            np.array_equal(index, first),
            f"{label} has {len(index)} examples, not the "
            f"{len(first)} of {'/'.join(map(str, first_key))}",
        ):
            break
    p.raise_any()
    return frame
