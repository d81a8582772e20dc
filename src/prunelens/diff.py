"""``prunelens diff A B``: what differs between two results folders, as Markdown.

A and B are results folders (``results/``) or working directories holding
one. Compared, each section said absent rather than crashed on when a side
lacks it: the config each was made with (``results/config.yaml``, dotted
keys), the package versions recorded with the models (``metrics.json`` and
``encoder.pt``), Table 1 and the claims side by side (B − A), and per PIE
cell the examples that became PIEs (gained) or stopped being ones (lost).
A path that is not a results folder is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from prunelens.runtime import VERSIONED

__all__ = [
    "ABSENT",
    "Comparison",
    "NotAResultsFolder",
    "compare",
    "config_changes",
    "flatten",
    "main",
    "md_cell",
    "md_table",
    "render",
    "results_folder",
]

# Entries of a results folder, any one of which makes a folder one.
MARKS = ("config.yaml", "scale.txt", "tables", "models", "pie")
CONFIG = "config.yaml"  # prunelens.config.CONFIG_RECORD, inside results/
TABLE1 = "tables/table1.csv"
CLAIMS = "tables/claims.csv"
TABLE1_KEY = ["method", "schedule", "sparsity"]
# Table 1's columns of our numbers (the paper_* columns are the paper's).
TABLE1_VALUES = [
    "n_models", "pie", "ties", "acc_mean", "acc_std", "pie_ci_low", "pie_ci_high",
    "pie_half", "pie_noise_floor",
]  # fmt: skip
CLAIMS_KEY = ["claim", "cell"]
CLAIMS_VALUES = ["estimate", "ci_low", "ci_high", "verdict", "n_models"]
FIRST = 5  # example indices listed per gained / lost set
NOT_RECORDED = "not recorded"


class _Absent:
    """A value one side does not have (a config key, a row)."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = _Absent()


class NotAResultsFolder(ValueError):
    """The one-line reason a path cannot be compared."""


def results_folder(path: str | Path) -> Path:
    """``path``'s results folder: ``path/results`` if there is one, else
    ``path`` itself if it holds any of ``MARKS``."""
    p = Path(path)
    if (p / "results").is_dir():
        p = p / "results"
    if not p.exists():
        raise NotAResultsFolder(f"{path}: no such folder")
    if not p.is_dir():
        raise NotAResultsFolder(f"{path}: not a folder")
    if not any((p / m).exists() for m in MARKS):
        raise NotAResultsFolder(
            f"{path}: not a results folder (it holds no results/ and none of "
            + ", ".join(MARKS)
            + ")"
        )
    return p


# ------------------------------------------------------------------ config


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys of a nested mapping to its leaves (lists are leaves; an
    empty mapping is a leaf ``{}``)."""
    if not isinstance(tree, Mapping) or (not tree and prefix):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out |= flatten(v, f"{prefix}.{k}" if prefix else str(k))
    return out


def config_changes(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[tuple]:
    """(dotted key, A's value, B's value) of every key whose values differ,
    ``ABSENT`` where a side lacks the key; sorted by key."""
    fa, fb = flatten(a), flatten(b)
    return [
        (k, fa.get(k, ABSENT), fb.get(k, ABSENT))
        for k in sorted(fa.keys() | fb.keys())
        if fa.get(k, ABSENT) != fb.get(k, ABSENT)
    ]


def _read_config(results: Path) -> dict[str, Any] | None:
    path = results / CONFIG
    if not path.is_file():
        return None
    loaded = yaml.safe_load(path.read_text())
    return loaded if isinstance(loaded, dict) else None


# ---------------------------------------------------------------- versions


def model_versions(results: Path) -> tuple[dict[str, Counter[str]], int]:
    """Per package, how many model files recorded each version, and the
    number of files read: every ``metrics.json`` and ``encoder.pt`` under
    ``models/``. Files from before ``versions`` was recorded give their
    ``torch`` (metrics.json) or nothing; a package they lack counts as
    ``NOT_RECORDED``."""
    found: list[dict[str, Any]] = []
    models = results / "models"
    for path in sorted(models.rglob("metrics.json")) if models.is_dir() else []:
        try:
            m = json.loads(path.read_text())
        except (OSError, ValueError):
            m = {}
        found.append(m.get("versions") or {"torch": m.get("torch")})
    encoders = sorted(models.rglob("encoder.pt")) if models.is_dir() else []
    if encoders:
        import torch  # only when there are encoders: a slow import

        for path in encoders:
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception:  # an unreadable file: its versions are unknown
                state = {}
            found.append(state.get("versions") or {})
    names = sorted({k for f in found for k in f}, key=_package_order)
    out = {
        n: Counter(NOT_RECORDED if f.get(n) is None else str(f[n]) for f in found)
        for n in names
    }
    return out, len(found)


def _package_order(name: str) -> tuple[int, str]:
    order = ("python", *VERSIONED, "prunelens")  # as runtime.versions() has them
    return (order.index(name), "") if name in order else (len(order), name)


# ------------------------------------------------------------------ tables


def _read_table(
    results: Path, name: str, key: Sequence[str]
) -> tuple[pd.DataFrame | None, str]:
    """A table and, when it cannot be compared, why: ``"absent"`` or a
    one-line reason (not CSV, no ``key`` columns)."""
    path = results / name
    if not path.is_file():
        return None, "absent"
    try:
        frame = pd.read_csv(path)
    except (ValueError, UnicodeDecodeError) as err:  # pandas' parser errors
        return None, f"unreadable ({' '.join(str(err).split())})"
    lacking = [c for c in key if c not in frame.columns]
    if lacking:
        return None, f"unreadable (no column {', '.join(lacking)})"
    return frame, ""


def _same(x: Any, y: Any) -> bool:
    if _missing(x) and _missing(y):
        return True
    return not _missing(x) and not _missing(y) and x == y


def _missing(x: Any) -> bool:
    return x is None or x is ABSENT or (isinstance(x, float) and math.isnan(x))


def side_by_side(
    a: pd.DataFrame | None,
    b: pd.DataFrame | None,
    key: Sequence[str],
    values: Sequence[str],
) -> list[dict[str, Any]]:
    """One row per key in A (its order) then per key only in B: ``key``'s
    values, ``a``/``b`` (the row's ``values``, or ``ABSENT``) and
    ``changed`` (the value columns that differ, NaN equal to NaN)."""
    rows: dict[tuple, dict[str, Any]] = {}
    for side, frame in (("a", a), ("b", b)):
        if frame is None:
            continue
        seen: Counter[tuple] = Counter()
        for rec in frame.to_dict("records"):
            k = tuple(rec[c] for c in key)
            seen[k] += 1
            k = (*k, seen[k])  # a key given twice: its occurrences in order
            row = rows.setdefault(k, {"key": k[:-1], "a": ABSENT, "b": ABSENT})
            row[side] = {c: rec.get(c) for c in values}
    for row in rows.values():
        if row["a"] is ABSENT or row["b"] is ABSENT:
            row["changed"] = list(values)
        else:
            row["changed"] = [c for c in values if not _same(row["a"][c], row["b"][c])]
    return list(rows.values())


# --------------------------------------------------------------------- PIEs


@dataclass(frozen=True)
class PieCell:
    """One PIE cell of both runs: PIE example indices per side (None: no
    readable file; ``problem_a``/``problem_b`` say why one could not be read)."""

    cell: str
    a: frozenset[int] | None
    b: frozenset[int] | None
    problem_a: str = ""
    problem_b: str = ""

    @property
    def both(self) -> bool:
        return self.a is not None and self.b is not None

    @property
    def gained(self) -> list[int]:
        return (
            sorted(self.b - self.a) if self.a is not None and self.b is not None else []
        )

    @property
    def lost(self) -> list[int]:
        return (
            sorted(self.a - self.b) if self.a is not None and self.b is not None else []
        )


def _pie_files(results: Path) -> dict[str, Path]:
    root = results / "pie"
    if not root.is_dir():
        return {}
    return {
        str(p.relative_to(root).with_suffix("")): p for p in sorted(root.rglob("*.csv"))
    }


def _pie_set(path: Path | None) -> tuple[frozenset[int] | None, str]:
    from prunelens.files import FileContractError, load_pie

    if path is None:
        return None, ""
    try:
        frame = load_pie(path)
    except FileContractError as err:
        return None, str(err)
    return frozenset(int(i) for i in frame.loc[frame["pie"], "index"]), ""


def pie_cells(a: Path, b: Path) -> list[PieCell]:
    """Every PIE cell (``pie/`` file) of A (sorted) then those only in B."""
    fa, fb = _pie_files(a), _pie_files(b)
    out = []
    for cell in [*fa, *(c for c in fb if c not in fa)]:
        sa, pa = _pie_set(fa.get(cell))
        sb, pb = _pie_set(fb.get(cell))
        out.append(PieCell(cell, sa, sb, pa, pb))
    return out


# ----------------------------------------------------------------- compare


@dataclass
class Comparison:
    """Everything ``render`` prints; ``None`` marks a side without the piece."""

    a: Path
    b: Path
    config_a: dict[str, Any] | None
    config_b: dict[str, Any] | None
    versions_a: dict[str, Counter[str]]
    versions_b: dict[str, Counter[str]]
    n_models_a: int
    n_models_b: int
    table1: list[dict[str, Any]] | None
    claims: list[dict[str, Any]] | None
    pies: list[PieCell] = field(default_factory=list)
    # per table, per side ("A", "B") that cannot be compared: why
    absent: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def config(self) -> list[tuple] | None:
        if self.config_a is None or self.config_b is None:
            return None
        return config_changes(self.config_a, self.config_b)

    @property
    def versions_differ(self) -> list[str]:
        names = sorted(self.versions_a.keys() | self.versions_b.keys())
        return [
            n
            for n in names
            if set(self.versions_a.get(n, {})) != set(self.versions_b.get(n, {}))
        ]


def compare(a: str | Path, b: str | Path) -> Comparison:
    """Compare two results folders (``results_folder`` of each)."""
    ra, rb = results_folder(a), results_folder(b)
    va, na = model_versions(ra)
    vb, nb = model_versions(rb)
    tables = {}
    absent: dict[str, dict[str, str]] = {}
    for name, path, key, values in (
        ("table1", TABLE1, TABLE1_KEY, TABLE1_VALUES),
        ("claims", CLAIMS, CLAIMS_KEY, CLAIMS_VALUES),
    ):
        (fa, why_a), (fb, why_b) = (_read_table(r, path, key) for r in (ra, rb))
        absent[name] = {s: w for s, w in (("A", why_a), ("B", why_b)) if w}
        both_absent = fa is None and fb is None
        tables[name] = None if both_absent else side_by_side(fa, fb, key, values)
    return Comparison(
        a=ra,
        b=rb,
        config_a=_read_config(ra),
        config_b=_read_config(rb),
        versions_a=va,
        versions_b=vb,
        n_models_a=na,
        n_models_b=nb,
        table1=tables["table1"],
        claims=tables["claims"],
        pies=pie_cells(ra, rb),
        absent=absent,
    )


# ------------------------------------------------------------------ render


def md_cell(x: Any) -> str:
    """A value as one Markdown table cell: ``|`` escaped, one line."""
    text = "\u2013" if _missing(x) else str(x)
    return " ".join(text.replace("|", "\\|").split())


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = [
        "| " + " | ".join(md_cell(h) for h in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def num(x: Any) -> str:
    """A number as the tables show it: integers bare, else 2 decimals (3
    significant digits below 1); missing ``\u2013``."""
    if _missing(x):
        return "\u2013"
    if isinstance(x, str):
        return x
    x = float(x)
    if x.is_integer():
        return str(int(x))
    return f"{x:.2f}" if abs(x) >= 1 else f"{x:.3g}"


def delta(a: Any, b: Any) -> str:
    """B − A, signed; ``\u2013`` if either is missing or not a number."""
    try:
        if _missing(a) or _missing(b):
            return "\u2013"
        d = float(b) - float(a)
    except (TypeError, ValueError):
        return "\u2013"
    return "0" if d == 0 else ("+" if d > 0 else "") + num(d)


def _config_value(v: Any) -> str:
    if v is ABSENT:
        return "(absent)"
    return v if isinstance(v, str) else json.dumps(v)


def _with_ci(v: Any, low: Any, high: Any) -> str:
    if _missing(low) and _missing(high):
        return num(v)
    return f"{num(v)} [{num(low)}, {num(high)}]"


def _side(row: dict[str, Any], side: str, fmt: Any) -> str:
    return (
        "only in " + ("B" if side == "a" else "A")
        if row[side] is ABSENT
        else fmt(row[side])
    )


def _pie_text(r: Mapping[str, Any]) -> str:
    return _with_ci(r["pie"], r["pie_ci_low"], r["pie_ci_high"])


def _acc_text(r: Mapping[str, Any]) -> str:
    if _missing(r["acc_std"]):
        return num(r["acc_mean"])
    return f"{num(r['acc_mean'])} \u00b1 {num(r['acc_std'])}"


def _get(row: dict[str, Any], side: str, col: str) -> Any:
    return ABSENT if row[side] is ABSENT else row[side][col]


def _versions_cell(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{v} ({n})" for v, n in sorted(counts.items())) or "\u2013"


def summary(c: Comparison) -> str:
    parts = []
    cfg = c.config
    if cfg is None:
        missing = [s for s, v in (("A", c.config_a), ("B", c.config_b)) if v is None]
        parts.append(f"config not recorded in {' and '.join(missing)}")
    else:
        n = len(cfg)
        parts.append(f"{n} config value{' differs' if n == 1 else 's differ'}")
    differ = c.versions_differ
    parts.append(
        "package versions differ: " + ", ".join(differ)
        if differ
        else "package versions equal"
    )
    for name, rows in (("Table 1", c.table1), ("claims", c.claims)):
        if rows is None:
            parts.append(f"{name}: in neither")
            continue
        changed = sum(bool(r["changed"]) for r in rows)
        text = f"{name}: {changed} of {len(rows)} rows changed"
        if name == "claims":
            verdicts = sum(
                _get(r, "a", "verdict") != _get(r, "b", "verdict") for r in rows
            )
            text += f" ({verdicts} verdict{'s' if verdicts != 1 else ''})"
        parts.append(text)
    changed_pies = [p for p in c.pies if p.gained or p.lost or not p.both]
    parts.append(
        f"PIEs: {len(changed_pies)} of {len(c.pies)} cells changed "
        f"(+{sum(len(p.gained) for p in c.pies)} gained, "
        f"\u2212{sum(len(p.lost) for p in c.pies)} lost)"
    )
    return "**Summary:** " + "; ".join(parts) + "."


def render(c: Comparison) -> str:
    """The Markdown report of a comparison."""
    out = [f"# prunelens diff: A = `{c.a}`, B = `{c.b}`", "", summary(c), ""]

    out += ["## Config values that differ", ""]
    cfg = c.config
    if cfg is None:
        for side, v in (("A", c.config_a), ("B", c.config_b)):
            if v is None:
                out.append(
                    f"{side} has no `{CONFIG}` (made before the workflow "
                    "recorded its config, or by no run that ran jobs)."
                )
        out += ["Configs not compared.", ""]
    elif not cfg:
        out += ["None: the configs are equal.", ""]
    else:
        rows = [(k, _config_value(x), _config_value(y)) for k, x, y in cfg]
        out += [md_table(["key", "A", "B"], rows), ""]

    out += ["## Package versions recorded with the models", ""]
    out.append(
        f"Versions found in {c.n_models_a} model files of A and "
        f"{c.n_models_b} of B (`metrics.json`, `encoder.pt`; count in brackets)."
    )
    out.append("")
    names = sorted(c.versions_a.keys() | c.versions_b.keys(), key=_package_order)
    if names:
        differ = set(c.versions_differ)
        rows = []
        for n in names:
            row = [n, _versions_cell(c.versions_a.get(n, {})),
                   _versions_cell(c.versions_b.get(n, {}))]  # fmt: skip
            rows.append([f"**{x}**" for x in row] if n in differ else row)
        out += [md_table(["package", "A", "B"], rows), ""]
    else:
        out += ["No model files in either.", ""]

    out += ["## Table 1 (B \u2212 A)", ""]
    out += _absent_lines(c, "table1", TABLE1)
    if c.table1 is not None:
        header = ["cell", "PIEs A [CI]", "PIEs B [CI]", "\u0394 PIEs",
                  "acc A (%)", "acc B (%)", "\u0394 acc", "changed"]  # fmt: skip
        rows = [
            [
                "/".join(str(k) for k in r["key"][:2]) + f"/s{r['key'][2]}",
                _side(r, "a", _pie_text),
                _side(r, "b", _pie_text),
                delta(_get(r, "a", "pie"), _get(r, "b", "pie")),
                _side(r, "a", _acc_text),
                _side(r, "b", _acc_text),
                delta(_get(r, "a", "acc_mean"), _get(r, "b", "acc_mean")),
                _changed(r),
            ]
            for r in c.table1
        ]
        out += [md_table(header, rows), ""]

    out += ["## Claims (B \u2212 A)", ""]
    out += _absent_lines(c, "claims", CLAIMS)
    if c.claims is not None:
        header = ["claim", "cell", "verdict A", "verdict B", "estimate [CI] A",
                  "estimate [CI] B", "\u0394 estimate", "changed"]  # fmt: skip

        def est(r: Mapping[str, Any]) -> str:
            return _with_ci(r["estimate"], r["ci_low"], r["ci_high"])

        rows = []
        for r in c.claims:
            va, vb = _get(r, "a", "verdict"), _get(r, "b", "verdict")
            changed = "**verdict**" if va != vb else ("yes" if r["changed"] else "")
            rows.append(
                [
                    r["key"][0],
                    r["key"][1],
                    _side(r, "a", lambda x: x["verdict"]),
                    _side(r, "b", lambda x: x["verdict"]),
                    _side(r, "a", est),
                    _side(r, "b", est),
                    delta(_get(r, "a", "estimate"), _get(r, "b", "estimate")),
                    changed,
                ]
            )
        out += [md_table(header, rows), ""]

    out += ["## PIEs gained and lost per cell", ""]
    if not c.pies:
        out += ["No PIE files (`pie/`) in either.", ""]
    else:
        out.append(
            "Gained: PIEs of B that are not PIEs of A; lost: the reverse "
            f"(test-split indices, the first {FIRST})."
        )
        out.append("")
        rows = [
            [
                p.cell,
                _pie_side(p.a, p.problem_a, "B"),
                _pie_side(p.b, p.problem_b, "A"),
                len(p.gained) if p.both else "\u2013",
                len(p.lost) if p.both else "\u2013",
                _first(p.gained),
                _first(p.lost),
            ]
            for p in c.pies
        ]
        out += [
            md_table(
                [
                    "cell",
                    "PIEs A",
                    "PIEs B",
                    "gained",
                    "lost",
                    "first gained",
                    "first lost",
                ],  # fmt: skip
                rows,
            ),
            "",
        ]
        for p in c.pies:
            out += [f"{p.cell}: {m}" for m in (p.problem_a, p.problem_b) if m]
    return "\n".join(out).rstrip("\n") + "\n"


def _changed(row: Mapping[str, Any]) -> str:
    """The columns that differ, or which side alone has the row."""
    if row["a"] is ABSENT or row["b"] is ABSENT:
        return "only in " + ("B" if row["a"] is ABSENT else "A")
    return ", ".join(row["changed"])


def _absent_lines(c: Comparison, name: str, path: str) -> list[str]:
    why = c.absent.get(name, {})
    if list(why.values()) == ["absent", "absent"]:
        return [f"Neither has `{path}`.", ""]
    lines = [
        f"{s} has no `{path}`." if w == "absent" else f"{s}'s `{path}` is {w}."
        for s, w in why.items()
    ]
    return lines + ([""] if lines else [])


def _pie_side(pies: frozenset[int] | None, problem: str, other: str) -> str:
    if problem:
        return "unreadable"
    return f"only in {other}" if pies is None else str(len(pies))


def _first(ids: Sequence[int]) -> str:
    if not ids:
        return ""
    more = ", \u2026" if len(ids) > FIRST else ""
    return ", ".join(map(str, ids[:FIRST])) + more


def main(argv: Sequence[str] | None = None) -> int:
    """``prunelens diff A B`` (or ``python -m prunelens.diff A B``): the
    Markdown on stdout; 2 and one line on stderr if A or B is no results
    folder."""
    parser = argparse.ArgumentParser(
        prog="prunelens diff",
        description="Compare two results folders; Markdown on stdout.",
    )
    parser.add_argument("a", help="results folder (or a working dir with results/)")
    parser.add_argument("b", help="the other one")
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        comparison = compare(args.a, args.b)
    except NotAResultsFolder as err:
        print(f"prunelens diff: {err}", file=sys.stderr)
        return 2
    sys.stdout.write(render(comparison))
    return 0


if __name__ == "__main__":
    sys.exit(main())
