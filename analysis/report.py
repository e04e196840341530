"""The analysis report: estimate tables in DuckDB, an HTML page with plots, a headline table.

``build_report`` reads sufficient statistics from the warehouse (read-only), computes every
estimate per experiment, replaces the ``analysis_*`` tables in one transaction under the
writer lock (re-running replaces, never appends), and writes a self-contained HTML file
(plots embedded as base64 PNG) so a researcher can open it without a server.
"""

from __future__ import annotations

import base64
import html
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from align_core.atomic import atomic_write_text  # noqa: E402
from align_core.warehouse import read_connection, transaction, write_connection  # noqa: E402
from analysis import queries  # noqa: E402
from analysis.guardrails import mde_relative, srm_test  # noqa: E402
from analysis.heterogeneity import heterogeneity_tables  # noqa: E402
from analysis.lift import lift_table  # noqa: E402
from analysis.observational import observational_table  # noqa: E402
from analysis.timing import dose_response, select_doses, timing_contrasts, video_variant_log_lifts  # noqa: E402

TABLES: tuple[str, ...] = (
    "analysis_lift", "analysis_heterogeneity", "analysis_timing", "analysis_dose_response",
    "analysis_guardrails", "analysis_observational",
)


@dataclass
class Report:
    """What a report run produced: the HTML file, every estimate table and the headline."""

    html_path: Path
    tables: dict[str, pd.DataFrame]
    headline_markdown: str
    experiments: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _with_experiment(frame: pd.DataFrame, experiment_id: str) -> pd.DataFrame:
    if frame is None or frame.empty:
        return pd.DataFrame()
    frame = frame.copy()
    frame.insert(0, "experiment_id", experiment_id)
    return frame


def compute_tables(database: str | os.PathLike[str], alpha: float = 0.05,
                   experiment_id: str | None = None) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame], list[str]]:
    """Every estimate table (and the per-experiment cell sums for plots), read-only.

    Returns ``(tables, cells_by_experiment, notes)``.
    """
    # Many small solves (thousands of rows by tens of columns): a 3500 x 35 least-squares solve
    # took 0.0012 s on one OpenBLAS thread and 0.24 s on two on the loaded 2-core machine.
    with threadpool_limits(limits=1, user_api="blas"):
        return _compute_tables(database, alpha, experiment_id)


def _compute_tables(database: str | os.PathLike[str], alpha: float,
                    experiment_id: str | None) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame], list[str]]:
    notes: list[str] = []
    parts: dict[str, list[pd.DataFrame]] = {name: [] for name in TABLES}
    cells_by_exp: dict[str, pd.DataFrame] = {}
    with read_connection(database) as con:
        cells_all = queries.cell_totals(con, experiment_id)
        arms = queries.arm_totals(con)
        deltas = queries.achieved_deltas(con)
        scenes = queries.scene_rows(con)
    if experiment_id:
        arms = arms[arms["experiment_id"] == experiment_id]
    if cells_all.empty:
        notes.append("no A/B results in the warehouse (table ab_results absent or empty)")
    if deltas is None:
        notes.append("manipulation_check absent: no dose-response")
    srm = srm_test(arms) if not arms.empty else pd.DataFrame()
    if not srm.empty:
        parts["analysis_guardrails"].append(srm.assign(metric="impressions", value=np.nan))
    for exp, cells in cells_all.groupby("experiment_id"):
        cells_by_exp[exp] = cells
        if "baseline" not in set(cells["variant"]):
            notes.append(f"experiment {exp}: no baseline arm, no lifts")
            continue
        if cells["video_id"].nunique() < 2:
            notes.append(f"experiment {exp}: fewer than 2 videos, cluster-robust errors undefined")
            continue
        lift = lift_table(cells, alpha=alpha)
        parts["analysis_lift"].append(_with_experiment(lift, exp))
        ind, tests = heterogeneity_tables(cells, alpha=alpha)
        if not ind.empty:
            ind = ind.assign(kind="industry_lift")
        if not tests.empty:
            tests = tests.assign(kind="test")
        het = pd.concat([t for t in (ind, tests) if not t.empty], ignore_index=True) if not (ind.empty and tests.empty) else pd.DataFrame()
        parts["analysis_heterogeneity"].append(_with_experiment(het, exp))
        for metric in ("ctr", "cvr"):
            parts["analysis_timing"].append(_with_experiment(timing_contrasts(cells, metric, alpha), exp))
            parts["analysis_dose_response"].append(_with_experiment(dose_response(cells, deltas, metric, alpha), exp))
        # planning: the smallest CTR lift this experiment could detect, with its measured design effect
        ctr = lift[lift["metric"] == "ctr"]
        if not ctr.empty:
            deff = float(np.nanmedian(ctr["design_effect"]))
            n_arm = float(ctr["baseline_den"].iloc[0])
            base = float(ctr["baseline_rate"].iloc[0])
            if base > 0 and np.isfinite(deff):
                parts["analysis_guardrails"].append(pd.DataFrame([{
                    "experiment_id": exp, "check": "mde_ctr_relative", "metric": "ctr",
                    "statistic": np.nan, "df": np.nan, "p_value": np.nan, "flagged": False, "threshold": np.nan,
                    "value": mde_relative(base, n_arm, max(deff, 1.0), alpha, 0.8),
                    "detail": (f"80% power at alpha={alpha}: baseline CTR {base:.4f}, {n_arm:.0f} impressions/arm, "
                               f"measured design effect {deff:.2f}"),
                }]))
    parts["analysis_observational"].append(observational_table(scenes, alpha))
    tables = {}
    for name, frames in parts.items():
        frames = [f for f in frames if f is not None and not f.empty]
        tables[name] = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return tables, cells_by_exp, notes


def write_tables(database: str | os.PathLike[str], tables: dict[str, pd.DataFrame]) -> None:
    """Replace every ``analysis_*`` table in one transaction (an empty result drops the table)."""
    with write_connection(database) as con, transaction(con):
        for name, frame in tables.items():
            if frame.empty:
                con.execute(f'DROP TABLE IF EXISTS "{name}"')
                continue
            con.register("_analysis_rows", frame)
            con.execute(f'CREATE OR REPLACE TABLE "{name}" AS SELECT * FROM _analysis_rows')
            con.unregister("_analysis_rows")


# ---------------------------------------------------------------------------------------------
# plots and HTML
# ---------------------------------------------------------------------------------------------

_METRIC_LABEL = {"ctr": "CTR", "cvr": "CVR", "watch_time": "watch time / impression"}


def _png(fig: plt.Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _forest(ax: plt.Axes, labels: list[str], est: np.ndarray, lo: np.ndarray, hi: np.ndarray, title: str) -> None:
    y = np.arange(len(labels))[::-1]
    ax.errorbar(est * 100, y, xerr=[(est - lo) * 100, (hi - est) * 100], fmt="o", color="tab:blue", capsize=3)
    ax.axvline(0, color="grey", lw=1, ls="--")
    ax.set_yticks(y, labels)
    ax.set_xlabel("relative lift vs baseline (%)")
    ax.set_title(title)


def plot_lift_forest(lift: pd.DataFrame) -> str:
    """Forest plot of relative lift with CIs per variant, one panel per metric (base64 PNG)."""
    metrics = [m for m in _METRIC_LABEL if m in set(lift["metric"])]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        part = lift[lift["metric"] == metric]
        _forest(ax, list(part["variant"]), part["rel_lift"].to_numpy(), part["rel_ci_low"].to_numpy(),
                part["rel_ci_high"].to_numpy(), _METRIC_LABEL[metric])
    fig.tight_layout()
    return _png(fig)


def plot_industry_forest(het: pd.DataFrame, metric: str = "ctr") -> str | None:
    """Forest plot of relative lift per variant x industry (base64 PNG)."""
    if het.empty or "industry" not in het:
        return None
    part = het[(het.get("kind") == "industry_lift") & (het["metric"] == metric)].sort_values(["variant", "industry"])
    if part.empty:
        return None
    labels = [f"{v} | {i}" for v, i in zip(part["variant"], part["industry"])]
    fig, ax = plt.subplots(figsize=(6, 0.28 * len(labels) + 1.2))
    _forest(ax, labels, part["rel_lift"].to_numpy(), part["rel_ci_low"].to_numpy(), part["rel_ci_high"].to_numpy(),
            f"{_METRIC_LABEL[metric]} lift by industry")
    fig.tight_layout()
    return _png(fig)


def plot_timing(lift: pd.DataFrame, cells: pd.DataFrame, dose: pd.DataFrame, deltas: pd.DataFrame | None) -> str:
    """Lift by timing window (early/middle/late) and, when present, the dose-response fit."""
    has_dose = not dose.empty and deltas is not None
    fig, axes = plt.subplots(1, 2 if has_dose else 1, figsize=(9 if has_dose else 4.5, 3.2), squeeze=False)
    ax = axes[0][0]
    order = ["early_boost", "middle_boost", "late_boost"]
    for offset, metric in ((-0.1, "ctr"), (0.1, "cvr")):
        part = lift[(lift["metric"] == metric) & lift["variant"].isin(order)].set_index("variant").reindex(order)
        x = np.arange(len(order)) + offset
        est = part["rel_lift"].to_numpy() * 100
        ax.errorbar(x, est, yerr=[est - part["rel_ci_low"].to_numpy() * 100, part["rel_ci_high"].to_numpy() * 100 - est],
                    fmt="o", capsize=3, label=_METRIC_LABEL[metric])
    ax.axhline(0, color="grey", lw=1, ls="--")
    ax.set_xticks(range(len(order)), ["early", "middle", "late"])
    ax.set_ylabel("relative lift vs baseline (%)")
    ax.set_title("Timing of the boost")
    ax.legend()
    if has_dose:
        ax2 = axes[0][1]
        ctr_dose = dose[dose["metric"] == "ctr"]
        pts = video_variant_log_lifts(cells, "ctr")
        pts = pts.merge(select_doses(deltas), on=["video_id", "variant"])
        ax2.scatter(pts["achieved_delta"], pts["log_lift"], s=8, alpha=0.4)
        if not ctr_dose.empty:
            xs = np.linspace(pts["achieved_delta"].min(), pts["achieved_delta"].max(), 20)
            ax2.plot(xs, ctr_dose["intercept"].iat[0] + ctr_dose["slope"].iat[0] * xs, color="tab:red",
                     label=f"slope {ctr_dose['slope'].iat[0]:.2f} ± {ctr_dose['slope_se'].iat[0]:.2f}")
            ax2.legend()
        ax2.set_xlabel("achieved alignment change")
        ax2.set_ylabel("log CTR ratio vs own baseline")
        ax2.set_title("Dose-response")
    fig.tight_layout()
    return _png(fig)


def headline_markdown(lift: pd.DataFrame, guardrails: pd.DataFrame) -> str:
    """One markdown table per experiment: relative CTR / CVR / watch-time lift with 95% CI."""
    if lift.empty:
        return "_No A/B results to report._"
    lines = []
    for exp, part in lift.groupby("experiment_id"):
        srm = guardrails[(guardrails.get("experiment_id") == exp) & (guardrails.get("check") == "sample_ratio_mismatch")] \
            if not guardrails.empty else pd.DataFrame()
        srm_text = ("SRM FLAGGED (p={:.2g}): lifts not trustworthy".format(srm["p_value"].iat[0])
                    if not srm.empty and bool(srm["flagged"].iat[0]) else "no sample-ratio mismatch")
        lines.append(f"**{exp}** ({int(part['n_videos'].iat[0])} videos; {srm_text})\n")
        lines.append("| variant | CTR lift [95% CI] | p | CVR lift [95% CI] | p | watch-time lift [95% CI] |")
        lines.append("|---|---|---|---|---|---|")
        for variant in part["variant"].unique():
            cells = []
            for metric in ("ctr", "cvr", "watch_time"):
                row = part[(part["variant"] == variant) & (part["metric"] == metric)]
                if row.empty:
                    cells.append("n/a")
                    if metric != "watch_time":
                        cells.append("")
                    continue
                r = row.iloc[0]
                cells.append(f"{r.rel_lift:+.1%} [{r.rel_ci_low:+.1%}, {r.rel_ci_high:+.1%}]")
                if metric != "watch_time":
                    cells.append(f"{r.p_value:.3g}")
            lines.append(f"| {variant} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _table_html(frame: pd.DataFrame, title: str) -> str:
    if frame.empty:
        return f"<h3>{html.escape(title)}</h3><p><em>no rows</em></p>"
    return f"<h3>{html.escape(title)}</h3>" + frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="",
                                                            classes="t", border=0)


def render_html(tables: dict[str, pd.DataFrame], cells_by_exp: dict[str, pd.DataFrame],
                deltas: pd.DataFrame | None, headline: str, notes: list[str]) -> str:
    """A self-contained HTML page: headline, per-experiment plots and every estimate table."""
    body = ["<h1>Attention-alignment A/B analysis</h1>"]
    body.append("<pre>" + html.escape(headline) + "</pre>")
    if notes:
        body.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    lift_all, het_all = tables["analysis_lift"], tables["analysis_heterogeneity"]
    dose_all = tables["analysis_dose_response"]
    for exp, cells in cells_by_exp.items():
        lift = lift_all[lift_all["experiment_id"] == exp] if not lift_all.empty else pd.DataFrame()
        if lift.empty:
            continue
        body.append(f"<h2>Experiment {html.escape(str(exp))}</h2>")
        body.append(f'<img alt="lift forest plot" src="data:image/png;base64,{plot_lift_forest(lift)}">')
        het = het_all[het_all["experiment_id"] == exp] if not het_all.empty else pd.DataFrame()
        png = plot_industry_forest(het)
        if png:
            body.append(f'<img alt="industry forest plot" src="data:image/png;base64,{png}">')
        dose = dose_all[dose_all["experiment_id"] == exp] if not dose_all.empty else pd.DataFrame()
        body.append(f'<img alt="timing plot" src="data:image/png;base64,{plot_timing(lift, cells, dose, deltas)}">')
    titles = {
        "analysis_guardrails": "Guardrails (sample-ratio mismatch, minimum detectable effect)",
        "analysis_lift": "Lift vs baseline (cluster-robust by video; iid tests for comparison)",
        "analysis_heterogeneity": "Heterogeneity by industry (Holm / BH adjusted; Cochran's Q; GLM interaction Wald)",
        "analysis_timing": "Timing contrasts (ratios of rates between timing variants)",
        "analysis_dose_response": "Dose-response on achieved alignment change",
        "analysis_observational": "Observational scene model (not causal)",
    }
    for name, title in titles.items():
        body.append(_table_html(tables[name], title))
    style = ("body{font-family:sans-serif;max-width:1200px;margin:auto}table.t{border-collapse:collapse;font-size:12px}"
             "table.t td,table.t th{padding:2px 6px;border-bottom:1px solid #ddd}img{max-width:100%}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>A/B analysis</title><style>{style}</style></head><body>" \
           + "\n".join(body) + "</body></html>"


def build_report(database: str | os.PathLike[str], output_dir: str | os.PathLike[str], alpha: float = 0.05,
                 experiment_id: str | None = None, write_to_warehouse: bool = True) -> Report:
    """Compute every estimate, replace the ``analysis_*`` tables, write ``report.html``."""
    tables, cells_by_exp, notes = compute_tables(database, alpha=alpha, experiment_id=experiment_id)
    with read_connection(database) as con:
        deltas = queries.achieved_deltas(con)
    if write_to_warehouse:
        write_tables(database, tables)
    headline = headline_markdown(tables["analysis_lift"], tables["analysis_guardrails"])
    page = render_html(tables, cells_by_exp, deltas, headline, notes)
    out = Path(output_dir)
    html_path = atomic_write_text(out / "report.html", page)
    atomic_write_text(out / "headline.md", headline + "\n")
    return Report(html_path=html_path, tables=tables, headline_markdown=headline,
                  experiments=sorted(cells_by_exp), notes=notes)
