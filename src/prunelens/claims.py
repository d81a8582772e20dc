"""Which of the paper's claims hold: one row per claim, bootstrap CI, verdict.

Every claim is a quantity of a few populations of models, the side of a null
value the paper puts it on, and the paper's own value of the same quantity
(computed from its tables). The quantity is recomputed from the workflow's
per-model files on resamples of each population's models
(:mod:`prunelens.bootstrap`), and the verdict reads the CI:

* ``holds``: the CI lies wholly on the claimed side of the null;
* ``contradicted``: wholly on the other side;
* ``inconclusive``: the CI contains the null;
* ``too few models``: a population involved has fewer than 3 models (0 when
  the grid does not train it).

Claims on PIE counts also say whether each count clears the noise floor
(:func:`prunelens.pie.noise_floor`): PIEs between a dense half and the
same-size pruned population, against PIEs between the two dense halves.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from prunelens.bootstrap import Models, Statistic, View, bootstrap, point
from prunelens.pie import TieBreak, half_pie_count, load_populations, noise_floor
from prunelens.study import (
    METHOD_LABELS,
    PAPER_GROUPS,
    PRUNED_SCHEDULES,
    SCHEDULE_LABELS,
    Grid,
    group_label,
)

__all__ = [
    "CLAIMS_COLUMNS",
    "MIN_MODELS",
    "Claim",
    "claims_frame",
    "claims_wide",
    "define_claims",
    "load_models",
    "pop_key",
    "verdict",
]

MIN_MODELS = 3
CLAIM_SPARSITY = 90  # C1, C2, C5-C7 compare at the paper's 90 %
PER_SPARSITY = (30, 50, 70, 90)  # C3, C4: Table 1's sparsities
CLAIMS_COLUMNS = [
    "claim",
    "statement",
    "cell",
    "paper",
    "estimate",
    "ci_low",
    "ci_high",
    "side",
    "null",
    "n_models",
    "verdict",
    "ci_method",
    "notes",
]


def pop_key(method: str, schedule: str, sparsity: int) -> str:
    """A population of models (their predictions and metrics)."""
    return f"{method}/{schedule}/s{sparsity}"


def depth_key(method: str, schedule: str, sparsity: int) -> str:
    """The population's prediction-depth models (its first N seeds)."""
    return "pd:" + pop_key(method, schedule, sparsity)


def _dense(method: str) -> str:
    return pop_key(method, "dense", 0)


@dataclass(frozen=True)
class Claim:
    claim: str
    statement: str
    cell: str
    paper: float | None
    side: Literal[">", "<"]
    null: float
    keys: tuple[str, ...]
    statistic: Statistic
    # (dense, pruned) population pairs whose PIE counts the claim rests on
    pie_counts: tuple[tuple[str, str], ...] = ()
    note: str = ""
    # for claims that choose among cells by the point estimate (C9's worst cell)
    describe: Callable[[View], str] | None = field(default=None, compare=False)


def verdict(low: float, high: float, side: str, null: float, n_min: int) -> str:
    if n_min < MIN_MODELS:
        return "too few models"
    if not (np.isfinite(low) and np.isfinite(high)):
        return "inconclusive"
    above, below = low > null, high < null
    if side == ">":
        return "holds" if above else "contradicted" if below else "inconclusive"
    return "holds" if below else "contradicted" if above else "inconclusive"


# ------------------------------------------------------------------ the claims


def _pie(dense: str, pruned: str) -> Statistic:
    return lambda v: v.pie_count(dense, pruned)


def _paper_pie(paper: Mapping[str, Any], method: str, schedule: str, s: int) -> Any:
    return paper["table1"].get(f"{method}_{schedule}", {}).get(s, {}).get("pie")


def _paper_acc(paper: Mapping[str, Any], method: str, schedule: str, s: int) -> Any:
    return paper["table1"].get(f"{method}_{schedule}", {}).get(s, {}).get("acc")


def _paper_q(paper: Mapping[str, Any], method: str, schedule: str, s: int) -> Any:
    table = "table4" if method == "scl" else "table5"
    return paper[table].get(f"{method}_{schedule}", {}).get(s, {}).get("q")


def _sub(a: Any, b: Any) -> float | None:
    return None if a is None or b is None else round(float(a) - float(b), 4)


def _q_mean(v: View, key: str) -> np.ndarray:
    per_example = v.per_example(key, "q")
    with np.errstate(invalid="ignore"):
        return np.nanmean(per_example, axis=1)


def _iou(v: View, sup: tuple[str, str], scl: tuple[str, str]) -> np.ndarray:
    a, b = v.pies(*sup), v.pies(*scl)
    union = (a | b).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, (a & b).sum(axis=1) / union, 0.0)


def define_claims(
    grid: Grid,
    paper: Mapping[str, Any],
    *,
    headline_ratio: float,
    depth_cells: Sequence[Mapping[str, Any]],
) -> list[Claim]:
    """C1-C9 of the issue (README "Claims"), for the populations of ``grid``.

    ``depth_cells``: Table 6's rows (method, schedule, group, sparsity and the
    sparsity of the PIE table that splits it, ``pie_sparsity``).
    """
    s90 = CLAIM_SPARSITY
    out: list[Claim] = []
    for sc in ("gmp", "oneshot"):  # C1
        sup, scl = pop_key("sup", sc, s90), pop_key("scl", sc, s90)
        pairs = ((_dense("scl"), scl), (_dense("sup"), sup))
        out.append(
            Claim(
                "C1",
                f"at {s90} % sparsity SCL has more PIEs than Sup "
                f"({group_label('scl', sc)} − {group_label('sup', sc)})",
                f"{scl} vs {sup}",
                _sub(
                    _paper_pie(paper, "scl", sc, s90), _paper_pie(paper, "sup", sc, s90)
                ),
                ">",
                0.0,
                (_dense("scl"), scl, _dense("sup"), sup),
                lambda v, p=pairs: v.pie_count(*p[0]) - v.pie_count(*p[1]),
                pie_counts=pairs,
            )
        )
    for sc in ("gmp", "oneshot"):  # C2
        keys = (
            _dense("scl"),
            pop_key("scl", sc, s90),
            _dense("sup"),
            pop_key("sup", sc, s90),
        )

        def drop(v: View, k: tuple[str, ...] = keys) -> np.ndarray:
            scl = v.mean(k[0], "acc") - v.mean(k[1], "acc")
            sup = v.mean(k[2], "acc") - v.mean(k[3], "acc")
            return 100 * (scl - sup)

        paper_drop = None
        if all(_paper_acc(paper, m, x, s) is not None for m, x, s in _c2_cells(sc)):
            scl_drop = _paper_acc(paper, "scl", sc, 0) - _paper_acc(
                paper, "scl", sc, s90
            )
            sup_drop = _paper_acc(paper, "sup", sc, 0) - _paper_acc(
                paper, "sup", sc, s90
            )
            paper_drop = round(scl_drop - sup_drop, 4)
        out.append(
            Claim(
                "C2",
                f"from 0 % to {s90} % SCL loses more test accuracy than Sup "
                f"({group_label('scl', sc)} drop − {group_label('sup', sc)} drop, pp)",
                f"{keys[1]} vs {keys[3]}",
                paper_drop,
                ">",
                0.0,
                keys,
                drop,
            )
        )
    for name, method, better, worse, verb in (
        ("C3", "scl", "delayed_gmp", "gmp", "delayed GMP gives fewer PIEs than GMP"),
        ("C4", "sup", "oneshot", "gmp", "One-Shot gives fewer PIEs than GMP"),
    ):
        for s in PER_SPARSITY:
            b, w = pop_key(method, better, s), pop_key(method, worse, s)
            pairs = ((_dense(method), b), (_dense(method), w))
            out.append(
                Claim(
                    name,
                    f"among {METHOD_LABELS[method]} models, {verb} at {s} % "
                    f"({group_label(method, better)} − {group_label(method, worse)})",
                    f"{b} vs {w}",
                    _sub(
                        _paper_pie(paper, method, better, s),
                        _paper_pie(paper, method, worse, s),
                    ),
                    "<",
                    0.0,
                    (_dense(method), b, w),
                    lambda v, p=pairs: v.pie_count(*p[0]) - v.pie_count(*p[1]),
                    pie_counts=pairs,
                )
            )
    out.append(_headline(grid, paper, headline_ratio))
    for sc in ("gmp", "oneshot"):  # C6
        keys = (
            _dense("scl"),
            pop_key("scl", sc, s90),
            _dense("sup"),
            pop_key("sup", sc, s90),
        )

        def rel(v: View, k: tuple[str, ...] = keys) -> np.ndarray:
            scl = _q_mean(v, k[1]) / _q_mean(v, k[0]) - 1
            sup = _q_mean(v, k[3]) / _q_mean(v, k[2]) - 1
            return 100 * (scl - sup)

        paper_rel = None
        qs = [_paper_q(paper, m, sc, s) for m in ("scl", "sup") for s in (0, s90)]
        if all(q is not None for q in qs):
            paper_rel = round(100 * ((qs[1] / qs[0] - 1) - (qs[3] / qs[2] - 1)), 2)
        out.append(
            Claim(
                "C6",
                f"Q-Score falls more with sparsity for SCL than for Sup: relative "
                f"change of the mean Q from 0 % to {s90} %, SCL − Sup "
                f"({SCHEDULE_NAME[sc]}, pp)",
                f"{keys[1]} vs {keys[3]}",
                paper_rel,
                "<",
                0.0,
                keys,
                rel,
            )
        )
    for sc in ("gmp", "oneshot"):  # C7
        keys = (
            depth_key("scl", "dense", 0),
            depth_key("scl", sc, s90),
            depth_key("sup", "dense", 0),
            depth_key("sup", sc, s90),
        )

        def spread(v: View, k: tuple[str, ...] = keys) -> np.ndarray:
            scl = v.per_example(k[1], "pd") - v.per_example(k[0], "pd")
            sup = v.per_example(k[3], "pd") - v.per_example(k[2], "pd")
            return scl.std(axis=1) - sup.std(axis=1)

        out.append(
            Claim(
                "C7",
                f"pruning moves prediction depth more for SCL than for Sup: std over "
                f"examples of the per-example PD change, {s90} % vs dense, SCL − Sup "
                f"({SCHEDULE_NAME[sc]})",
                f"{keys[1][3:]} vs {keys[3][3:]}",
                None,
                ">",
                0.0,
                keys,
                spread,
                note="the paper shows it (Fig. 3, Table 6's spreads) without a number",
            )
        )
    for sc in ("gmp", "oneshot"):  # C8
        shared = grid.shared_sparsities(sc)
        lo, hi = (shared[0], shared[-1]) if len(shared) >= 2 else (None, None)
        if lo is None:
            keys = (pop_key("sup", sc, -1),)  # no two shared sparsities: 0 models
            cells_ = f"{sc}: fewer than two sparsities shared by Sup and SCL"

            def iou_gain(v: View) -> np.ndarray:
                return np.full(1, np.nan)
        else:
            sides = {
                s: (
                    (_dense("sup"), pop_key("sup", sc, s)),
                    (_dense("scl"), pop_key("scl", sc, s)),
                )
                for s in (lo, hi)
            }
            keys = (_dense("sup"), _dense("scl")) + tuple(
                p[1] for s in (lo, hi) for p in sides[s]
            )
            cells_ = f"{SCHEDULE_NAME[sc]} Sup∩SCL IoU, s{hi} vs s{lo}"

            def iou_gain(
                v: View, sd: Any = sides, a: Any = lo, b: Any = hi
            ) -> np.ndarray:
                return _iou(v, *sd[b]) - _iou(v, *sd[a])

        out.append(
            Claim(
                "C8",
                "PIEs shared by Sup and SCL grow with sparsity: IoU of their PIE sets "
                f"at the largest sparsity − at the smallest ({SCHEDULE_NAME[sc]})",
                cells_,
                None,
                ">",
                0.0,
                keys,
                iou_gain,
                note="the paper shows it (Fig. 4 and 7) without a number",
            )
        )
    out.append(_depth_claim(paper, depth_cells))
    return out


SCHEDULE_NAME = {sc: SCHEDULE_LABELS[sc] for sc in PRUNED_SCHEDULES}


def _c2_cells(sc: str) -> list[tuple[str, str, int]]:
    return [(m, sc, s) for m in ("scl", "sup") for s in (0, CLAIM_SPARSITY)]


def _headline(grid: Grid, paper: Mapping[str, Any], threshold: float) -> Claim:
    """C5: PIEs of SCL's best schedule at 90 % over Sup/One-Shot's."""
    s90 = CLAIM_SPARSITY
    # the paper's schedules only: a control (random) is no candidate for "best"
    candidates = [
        sc
        for sc in grid.pruned_schedules("scl")
        if grid.has("scl", sc, s90) and ("scl", sc) in PAPER_GROUPS
    ]
    sup = pop_key("sup", "oneshot", s90)
    keys = (
        _dense("scl"),
        *(pop_key("scl", sc, s90) for sc in candidates),
        _dense("sup"),
        sup,
    )
    paper_best = min(
        (_paper_pie(paper, "scl", sc, s90) for sc in ("gmp", "delayed_gmp", "oneshot")),
        default=None,
    )
    paper_ratio = round(paper_best / _paper_pie(paper, "sup", "oneshot", s90), 4)

    def best(v: View) -> str:
        counts = {
            sc: float(v.pie_count(_dense("scl"), pop_key("scl", sc, s90))[0])
            for sc in candidates
        }
        return min(counts, key=counts.__getitem__)

    holder: dict[str, str] = {}

    def ratio(v: View) -> np.ndarray:
        sc = holder.get("best") or best(v)
        holder["best"] = sc  # chosen once, on the point estimate
        num = v.pie_count(_dense("scl"), pop_key("scl", sc, s90))
        den = v.pie_count(_dense("sup"), sup)
        with np.errstate(invalid="ignore", divide="ignore"):
            return num / den

    pairs = tuple((_dense("scl"), pop_key("scl", sc, s90)) for sc in candidates)
    among = ", ".join(pop_key("scl", sc, s90) for sc in candidates) or "none"
    return Claim(
        "C5",
        f"the headline ×3: PIEs of SCL's best (fewest-PIE) schedule at {s90} % over "
        f"Sup / One-Shot's at {s90} %; holds when the CI lies above {threshold:g}",
        f"best of {among} / {sup}",
        paper_ratio,
        ">",
        float(threshold),
        keys if candidates else (pop_key("scl", "gmp", s90), sup),
        ratio,
        pie_counts=(*pairs, (_dense("sup"), sup)),
        describe=lambda v: (
            f"best SCL schedule: {SCHEDULE_NAME[holder.get('best') or best(v)]}"
        ),
    )


def _depth_claim(paper: Mapping[str, Any], cells: Sequence[Mapping[str, Any]]) -> Claim:
    """C9: in every Table 6 cell, PIEs have a higher mean PD than non-PIEs;
    the quantity is the smallest difference over the cells."""
    rows = [
        (
            c,
            _dense(c["method"]),
            pop_key(c["method"], c["group"], c["pie_sparsity"]),
            depth_key(c["method"], c["schedule"], c["sparsity"]),
        )
        for c in cells
    ]

    def gaps(v: View) -> np.ndarray:
        out = []
        for _, dense, pruned, depth in rows:
            pie, pd_ = np.broadcast_arrays(
                v.pies(dense, pruned), v.per_example(depth, "pd")
            )
            n_pie, n_non = pie.sum(axis=1), (~pie).sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean_pie = np.where(n_pie > 0, (pd_ * pie).sum(axis=1) / n_pie, np.nan)
                mean_non = np.where(n_non > 0, (pd_ * ~pie).sum(axis=1) / n_non, np.nan)
            out.append(mean_pie - mean_non)
        return np.stack(np.broadcast_arrays(*out)) if out else np.full((1, 1), np.nan)

    def smallest(v: View) -> np.ndarray:
        # a cell without PIEs (or without non-PIEs) has no gap and is skipped
        low = np.where(np.isnan(g := gaps(v)), np.inf, g).min(axis=0)
        return np.where(np.isinf(low), np.nan, low)

    def worst(v: View) -> str:
        g = gaps(v)[:, 0]
        if not len(rows) or np.all(np.isnan(g)):
            return "no cell has both PIEs and non-PIEs"
        c = rows[int(np.nanargmin(g))][0]
        return (
            f"smallest gap in {group_label(c['method'], c['group'])}, "
            f"{pop_key(c['method'], c['schedule'], c['sparsity'])}"
        )

    paper_gaps = [
        v["pie"] - v["non_pie"]
        for group in paper.get("table6", {}).values()
        for v in group.values()
    ]
    keys = tuple(sorted({k for _, d, p, pd_ in rows for k in (d, p, pd_)}))
    return Claim(
        "C9",
        "PIEs have a higher prediction depth than non-PIEs in every cell of Table 6 "
        "(smallest PIE − non-PIE mean PD over the cells)",
        f"{len(rows)} Table 6 cells",
        round(min(paper_gaps), 4) if paper_gaps else None,
        ">",
        0.0,
        keys or ("pd:none",),
        smallest,
        describe=worst,
    )


# ------------------------------------------------------------------ evaluation


def load_models(
    populations: Sequence[Mapping[str, Any]],
    *,
    q_keys: set[str] | None = None,
    pd_column: str = "pd",
) -> dict[str, Models]:
    """Per-model data of each population, every file checked
    (:mod:`prunelens.files`) and all of them of the same test examples.

    ``populations``: mappings with ``key`` and either ``predictions`` (+
    ``metrics``) paths, or ``depth`` paths (per-model depth files) for a
    ``pd:`` key. Q-Scores are computed (from the ``rep`` arrays) only for
    ``q_keys``.
    """
    from prunelens.files import (
        load_depth,
        load_metrics,
        load_predictions,
        same_examples,
    )
    from prunelens.scores import qscore

    voting = [pop for pop in populations if pop.get("depth") is None]
    loaded = load_populations([pop["predictions"] for pop in voting]) if voting else []
    by_key = {pop["key"]: pp for pop, pp in zip(voting, loaded, strict=True)}
    index = loaded[0].index if loaded else None
    out: dict[str, Models] = {}
    for pop in populations:
        key = pop["key"]
        if pop.get("depth") is not None:
            depth = [load_depth(p, index=index) for p in pop["depth"]]
            same_examples(
                [(p, d["index"]) for p, d in zip(pop["depth"], depth, strict=True)],
                rule="probe_depth",
            )
            pds = [np.asarray(d[pd_column], np.float64) for d in depth]
            out[key] = Models(len(pds), pd=np.stack(pds))
            continue
        acc = np.array([load_metrics(p)["test_acc"] for p in pop["metrics"]])
        q = None
        if q_keys and key in q_keys:
            # one model's representations at a time; float32 as a reference stores
            q = np.stack(
                [
                    qscore(
                        load_predictions(p, index=index, arrays=("rep",)).rep
                    ).q.astype(np.float32)
                    for p in pop["predictions"]
                ]
            )
        out[key] = Models(len(acc), preds=by_key[key].preds, acc=acc, q=q)
    return out


def q_keys_of(claims: Sequence[Claim]) -> set[str]:
    return {k for c in claims if c.claim == "C6" for k in c.keys}


def _n_models(claim: Claim, data: Mapping[str, Models]) -> dict[str, int]:
    return {k: (data[k].n_models if k in data else 0) for k in claim.keys}


def _floor_note(claim: Claim, data: Mapping[str, Models], tie_break: TieBreak) -> str:
    notes = []
    for dense, pruned in claim.pie_counts:
        if dense not in data or pruned not in data:
            continue
        d, p = data[dense], data[pruned]
        count = point(
            lambda v, a=dense, b=pruned: v.pie_count(a, b),
            data,
            [dense, pruned],
            tie_break,
        )
        if d.n_models < 4 or p.n_models < 2 * (d.n_models // 2):
            notes.append(
                f"{pruned}: {count:.0f} PIEs (noise floor needs >= 4 dense models)"
            )
            continue
        half = half_pie_count(d.preds, p.preds, tie_break=tie_break)
        floor = noise_floor(d.preds, tie_break=tie_break)
        clears = "clears" if half > floor else "does not clear"
        notes.append(
            f"{pruned}: {count:.0f} PIEs; half {half} vs floor {floor} ({clears})"
        )
    return "; ".join(notes)


def claims_frame(
    claims: Sequence[Claim],
    data: Mapping[str, Models],
    *,
    n_resamples: int,
    confidence: float,
    random_state: int,
    tie_break: TieBreak = "smallest",
) -> pd.DataFrame:
    """The claims table: one row per claim (columns :data:`CLAIMS_COLUMNS`)."""
    ready = {}
    for i, c in enumerate(claims):
        if min(_n_models(c, data).values()) >= MIN_MODELS:
            ready[str(i)] = (c.statistic, list(c.keys))
    intervals = (
        bootstrap(
            ready,
            data,
            n_resamples=n_resamples,
            confidence=confidence,
            random_state=random_state,
            tie_break=tie_break,
        )
        if ready
        else {}
    )
    rows = []
    for i, c in enumerate(claims):
        n = _n_models(c, data)
        notes = [c.note] if c.note else []
        if str(i) in intervals:
            iv = intervals[str(i)]
            est, low, high, method = iv.estimate, iv.low, iv.high, iv.method
        else:
            est = low = high = np.nan
            method = ""
            if all(k in data for k in c.keys) and min(n.values()) > 0:
                est = point(c.statistic, data, c.keys, tie_break)
            missing = [k for k, m in n.items() if m == 0]
            if missing:
                notes.append("not in the grid: " + ", ".join(missing))
        if c.describe is not None and all(k in data for k in c.keys):
            view = View(
                data, {k: np.ones((1, data[k].n_models)) for k in c.keys}, tie_break
            )
            notes.append(c.describe(view))
        floor = _floor_note(c, data, tie_break)
        if floor:
            notes.append(floor)
        rows.append(
            {
                "claim": c.claim,
                "statement": c.statement,
                "cell": c.cell,
                "paper": c.paper,
                "estimate": est,
                "ci_low": low,
                "ci_high": high,
                "side": c.side,
                "null": c.null,
                "n_models": " ".join(f"{k}:{m}" for k, m in n.items()),
                "verdict": verdict(low, high, c.side, c.null, min(n.values())),
                "ci_method": method,
                "notes": "; ".join(notes),
            }
        )
    return pd.DataFrame(rows, columns=CLAIMS_COLUMNS)


def _num(x: Any) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    return f"{x:.3g}" if abs(x) < 10 else f"{x:.1f}"


def _models_short(n_models: str) -> str:
    counts = sorted({int(part.rsplit(":", 1)[1]) for part in n_models.split()})
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"


def claims_wide(df: pd.DataFrame) -> pd.DataFrame:
    """The claims as shown in Markdown, LaTeX and the report."""
    return pd.DataFrame(
        {
            "Claim": df["claim"],
            "Statement": df["statement"],
            "Paper": [_num(v) for v in df["paper"]],
            "Ours [95 % CI]": [
                f"{_num(e)} [{_num(lo)}, {_num(hi)}]"
                for e, lo, hi in zip(
                    df["estimate"], df["ci_low"], df["ci_high"], strict=True
                )
            ],
            "Null": [
                f"{s} {_num(n)}" for s, n in zip(df["side"], df["null"], strict=True)
            ],
            "Models": [_models_short(n) for n in df["n_models"]],
            "Verdict": df["verdict"],
            "Notes": df["notes"],
        }
    )


def claims_table(
    populations: Sequence[Mapping[str, Any]],
    *,
    grid: Mapping[str, Any],
    depth_cells: Sequence[Mapping[str, Any]],
    paper: Mapping[str, Any],
    tie_break: TieBreak,
    n_resamples: int,
    confidence: float,
    random_state: int,
    headline_ratio: float,
    pd_column: str = "pd",
) -> pd.DataFrame:
    """The claims of ``grid`` (``methods``, ``schedules`` as in the config)
    from the files named in ``populations`` (see :func:`load_models`)."""
    claims = define_claims(
        Grid.from_config(grid),
        paper,
        headline_ratio=headline_ratio,
        depth_cells=depth_cells,
    )
    data = load_models(populations, q_keys=q_keys_of(claims), pd_column=pd_column)
    return claims_frame(
        claims,
        data,
        n_resamples=n_resamples,
        confidence=confidence,
        random_state=random_state,
        tie_break=tie_break,
    )


VERDICT_COLOURS = {
    "holds": "#c8e6c9",
    "contradicted": "#ffcdd2",
    "inconclusive": "#fff3c4",
    "too few models": "#e0e0e0",
}


def claims_html(wide: pd.DataFrame, caption: str) -> str:
    """The claims as one HTML table, each verdict cell coloured."""
    styler = (
        wide.style.hide(axis="index")
        .format(escape="html")
        .format_index(escape="html", axis=1)
        .map(
            lambda v: f"background-color: {VERDICT_COLOURS.get(v, 'transparent')}",
            subset=["Verdict"],
        )
        .set_caption(html.escape(caption))
        .set_table_styles(
            [
                {"selector": "", "props": "border-collapse: collapse; font-size: 80%"},
                {"selector": "td", "props": "vertical-align: top; min-width: 4em"},
                {
                    "selector": "td, th",
                    "props": "border: 1px solid #bbb; padding: 3px 6px",
                },
            ]
        )
    )
    styler.set_uuid("claims")  # stable ids: a rerun writes the same file
    return styler.to_html()
