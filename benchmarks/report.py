"""Build a Markdown report (with PNG plots and an HTML page) from benchmark results.

For each family: a table of every instance x method (status, objective, bound, gap, times) with
ratios against the family's named baseline measured in the same run, a time-versus-size plot, and,
for solver comparisons, the Dolan-More performance profile, the failures and HiGHS's gap over time.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from splitopt.benchmarks.runner import load_rows, warn_skipped

from splitopt.errors import InputError
from splitopt.io import atomic_open, atomic_write


def _time(row: dict[str, Any]) -> float | None:
    for key in ("solve_s", "wall_s"):
        v = row.get(key)
        if isinstance(v, (int, float)) and math.isfinite(v):
            return float(v)
    return None


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(figsize=(6, 4))


def _save(plt, fig, ax, path: Path, title: str) -> None:
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, dpi=110, format="png")
    plt.close(fig)


def _side_file(path: Path, check, notes: list[str]) -> dict[str, Any]:
    """A JSON object written beside the results (families.json, machine.json), or {} with a note.

    ``check(doc)`` returns why a parsed document is unusable, or None. A missing file is not an
    error; a malformed one is reported in the report and on standard error, never a traceback.
    """
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        why: str | None = f"not readable JSON ({type(err).__name__})"
    else:
        why = check(doc)
    if why is None:
        return doc
    notes.append(f"{path.name}: ignored, {why}")
    return {}


def _families_problem(doc: Any) -> str | None:
    if not isinstance(doc, dict):
        return "not a JSON object of families"
    for name, meta in doc.items():
        if not isinstance(meta, dict):
            return f"family {name!r} is not an object"
        base = meta.get("baseline")
        if base is not None and not isinstance(base, str) and not (
                isinstance(base, list) and all(isinstance(b, str) for b in base)):
            return f"family {name!r}: 'baseline' is not a method name or a list of them"
        if not isinstance(meta.get("description", ""), str):
            return f"family {name!r}: 'description' is not a string"
        cols = meta.get("columns", [])
        if not isinstance(cols, list) or not all(isinstance(c, str) for c in cols):
            return f"family {name!r}: 'columns' is not a list of names"
    return None


def _machine_problem(doc: Any) -> str | None:
    if not isinstance(doc, dict):
        return "not a JSON object"
    if not isinstance(doc.get("libraries", {}), dict):
        return "'libraries' is not an object"
    return None


def _ok(row: dict[str, Any]) -> bool:
    return row.get("status") in ("optimal", "ok", "feasible", "time_limit") and not row.get("error")


def family_table(rows: list[dict[str, Any]], baseline: str | list[str] | None,
                 extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Markdown table lines: one row per instance x method, with ratios against the baseline
    (the first of the baseline methods that the instance has)."""
    names = [baseline] if isinstance(baseline, str) else list(baseline or [])
    base: dict[str, dict[str, Any]] = {}
    for name in reversed(names):
        base.update({r["instance"]: r for r in rows if r["method"] == name})
    cols = ["instance", "method", "status", "objective", "bound", "gap", "build s", "time s"]
    if names:
        cols += ["speed-up vs baseline", "objective / baseline", "baseline"]
    cols += list(extra)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in sorted(rows, key=lambda r: (r.get("size") or 0, r["instance"], r["method"])):
        gap = r.get("gap")
        if gap is None and isinstance(r.get("objective"), (int, float)) and isinstance(
                r.get("bound"), (int, float)) and r["objective"]:
            gap = abs(r["objective"] - r["bound"]) / abs(r["objective"])
        cells = [r["instance"], r["method"], r.get("status", "-"), _fmt(r.get("objective")),
                 _fmt(r.get("bound")), _fmt(gap), _fmt(r.get("build_s")), _fmt(_time(r))]
        if baseline:
            b = base.get(r["instance"])
            speed = obj = None
            if b and _time(b) and _time(r) and r.get("status") != "skipped":
                speed = _time(b) / _time(r)
            if b and b.get("objective") and r.get("objective") is not None:
                obj = r["objective"] / b["objective"]
            cells += [_fmt(speed), _fmt(obj), b["method"] if b else "-"]
        cells += [_fmt(r.get(c)) for c in extra]
        lines.append("| " + " | ".join(cells) + " |")
    flagged = [r for r in rows if r.get("error") or r.get("objective_error")]
    if flagged:
        lines += ["", "Failures and flags:", ""]
    for r in flagged:
        why = r.get("error") or (f"reported objective differs from the re-priced plan by "
                                 f"{r['objective_error']:.2e} (relative)")
        lines.append(f"- {r['instance']} / {r['method']}: {r.get('status')}: {why}")
    return lines


def performance_profile(rows: list[dict[str, Any]], path: Path, title: str) -> bool:
    """Dolan-More profile: fraction of instances each method solves within tau x the best time."""
    by_inst: dict[str, dict[str, float]] = defaultdict(dict)
    for r in rows:
        t = _time(r)
        solved = t and r.get("status") == "optimal"
        by_inst[r["instance"]][r["method"]] = t if solved else math.inf
    methods = sorted({r["method"] for r in rows})
    if len(by_inst) < 1 or len(methods) < 2:
        return False
    taus = [1.0 * (1.15 ** i) for i in range(60)]
    plt, fig, ax = _figure()
    for m in methods:
        ratios = []
        for times in by_inst.values():
            best = min(times.values())
            ratios.append(times.get(m, math.inf) / best if math.isfinite(best) else math.inf)
        ax.step(taus, [sum(x <= t for x in ratios) / len(ratios) for t in taus], where="post",
                label=m)
    ax.set_xscale("log")
    ax.set_xlabel("tau: time within tau x the fastest route (optimal answers only)")
    ax.set_ylabel("fraction of instances")
    _save(plt, fig, ax, path, title)
    return True


def time_vs_size(rows: list[dict[str, Any]], path: Path, title: str) -> bool:
    """Log-log plot of time against instance size per method."""
    pts: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in rows:
        t = _time(r)
        if r.get("size") and t and _ok(r):
            pts[r["method"]].append((float(r["size"]), t))
    if not pts or all(len(v) < 2 for v in pts.values()):
        return False
    plt, fig, ax = _figure()
    for m, xy in sorted(pts.items()):
        xy.sort()
        ax.plot([x for x, _ in xy], [y for _, y in xy], marker="o", label=m)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("instance size")
    ax.set_ylabel("seconds")
    _save(plt, fig, ax, path, title)
    return True


def gap_over_time(rows: list[dict[str, Any]], path: Path) -> bool:
    """HiGHS's incumbent and bound over time (from its improving-solution callback)."""
    traces = [(r["instance"], r["trace"]) for r in rows if r.get("trace")]
    if not traces:
        return False
    plt, fig, ax = _figure()
    for inst, tr in traces:
        ts = [p[0] for p in tr]
        gaps = [abs(p[1] - p[2]) / max(abs(p[1]), 1e-300) for p in tr]
        ax.step(ts, [max(g, 1e-9) for g in gaps], where="post", marker=".", label=inst)
    ax.set_yscale("log")
    ax.set_xlabel("seconds")
    ax.set_ylabel("relative gap at each new incumbent")
    _save(plt, fig, ax, path, "gap over time (HiGHS)")
    return True


def _phase_tables(rows: list[dict[str, Any]]) -> list[str]:
    """Predicted vs measured per phase, for rows that carry them."""
    lines = []
    for r in rows:
        if not r.get("phases"):
            continue
        lines += [f"{r['instance']}: predicted vs measured seconds per round", "",
                  "| phase | predicted | measured | relative error |", "|---|---|---|---|"]
        lines += [f"| {p['phase']} | {_fmt(p.get('predicted'))} | {_fmt(p.get('measured'))} | "
                  f"{_fmt(p.get('rel_error'))} |" for p in r["phases"]]
        lines.append("")
    return lines


def build_report(results_dir: str | Path) -> Path:
    """Write report.md, its PNG plots and report.html into ``results_dir``; return report.md.

    A folder that cannot be written (permissions, a folder named report.md) is one InputError.
    """
    try:
        return _build_report(Path(results_dir))
    except OSError as err:
        raise InputError("RESULTS_DIR", str(results_dir), "a folder the report can be written "
                         "into", f"{type(err).__name__}: {err}") from None


def _build_report(out: Path) -> Path:
    notes: list[str] = []
    rows = load_rows(out, notes)
    fams = _side_file(out / "families.json", _families_problem, notes)
    machine = _side_file(out / "machine.json", _machine_problem, notes)
    warn_skipped(notes)
    lines = ["# splitopt benchmark report", ""]
    if notes:
        lines += ["Skipped input (fix or delete these lines to include them):", ""]
        lines += [f"- {n}" for n in notes[:50]] + [""]
    if machine:
        libs = ", ".join(f"{k} {v}" for k, v in machine.get("libraries", {}).items() if v)
        lines += [f"Machine: {machine.get('processor')} x {machine.get('cpus')} CPUs, Python "
                  f"{machine.get('python')}, {machine.get('platform')}; run {machine.get('time')}"
                  f"{' (quick sweep)' if machine.get('quick') else ''}.", "",
                  f"Libraries: {libs}.", ""]
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        grouped[r["family"]].append(r)
    for fam, frows in grouped.items():
        meta = fams.get(fam, {})
        lines += [f"## {fam}", "", meta.get("description", ""), ""]
        if meta.get("baseline"):
            names = meta["baseline"] if isinstance(meta["baseline"], list) else [meta["baseline"]]
            lines += [f"Ratios are against {' / '.join(names)}, measured in the same run "
                      "(speed-up = baseline time / method time).", ""]
        lines += family_table(frows, meta.get("baseline"), meta.get("columns", ()))
        lines.append("")
        lines += _phase_tables(frows)
        for kind, fn in (("time", time_vs_size), ("profile", performance_profile)):
            png = out / f"{fam}_{kind}.png"
            if fn(frows, png, f"{fam}: {kind}"):
                lines += [f"![{fam} {kind}]({png.name})", ""]
        png = out / f"{fam}_gap.png"
        if gap_over_time(frows, png):
            lines += [f"![{fam} gap over time]({png.name})", ""]
    md = out / "report.md"
    atomic_write(md, "\n".join(lines) + "\n")
    _html(md, out / "report.html")
    return md


def _html(md: Path, html: Path) -> None:
    import markdown

    body = markdown.markdown(md.read_text(), extensions=["tables"])
    atomic_write(html, "<!doctype html><html><head><meta charset='utf-8'><title>splitopt report"
                    "</title><style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
                    "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
                    "padding:2px 6px}</style></head><body>" + body + "</body></html>")
