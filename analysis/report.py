"""The analysis report: estimate tables in DuckDB, an HTML page with plots, a headline table.

``build_report`` reads sufficient statistics from the warehouse (read-only), computes every
estimate per experiment, replaces the ``analysis_*`` tables in one transaction under the
writer lock (re-running replaces, never appends), and writes a self-contained HTML file
(plots embedded as base64 PNG) so a researcher can open it without a server. Every table on the
page says which model and which small-sample correction produced it; rows that cannot be
estimated say why in their ``note`` instead of showing a number.
"""

from __future__ import annotations

import base64
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import matplotlib
from markupsafe import Markup

__all__ = [
    "TABLES",
    "build_report",
    "compute_tables",
]

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from align_core.experiments.config import ExperimentConfig, registered_configs, registered_variants  # noqa: E402
from align_core.io.atomic import atomic_write_text  # noqa: E402
from align_core.io.warehouse import read_connection, transaction, write_connection  # noqa: E402
from align_core.stimuli.plans import DEFAULT_VARIANTS, dose_windows, timing_variants, variant_names  # noqa: E402
from analysis import queries  # noqa: E402
from analysis.arms import BASELINE, control_arm  # noqa: E402
from analysis.guardrails import mde_relative, srm_test  # noqa: E402
from analysis.heterogeneity import heterogeneity_tables  # noqa: E402
from analysis.lift import DESIGNS, arms_chi_square, lift_table  # noqa: E402
from analysis.matched import complete_block_cells  # noqa: E402
from analysis.meta import moderator_regression, pool_industries  # noqa: E402
from analysis.observational import observational_table  # noqa: E402
from analysis.preregistration import deviations_table  # noqa: E402
from analysis.pretest import (  # noqa: E402
    REPORT_TABLES,
    pretest_report_frames,
    require_human_check,
    stored_human_verdicts,
)
from analysis.simulated import label_simulated, simulated_banner, simulated_experiments  # noqa: E402
from analysis.single_creative import is_single_creative, single_creative_lifts  # noqa: E402
from analysis.small_sample import METHOD_CR2, SMALL_SAMPLE_CLUSTERS  # noqa: E402
from analysis.timing import dose_response, select_doses, timing_contrasts, video_variant_log_lifts  # noqa: E402

TABLES: tuple[str, ...] = (
    "analysis_lift",
    "analysis_lift_complete_block",
    "analysis_arms_test",
    "analysis_heterogeneity",
    "analysis_meta",
    "analysis_timing",
    "analysis_dose_response",
    "analysis_guardrails",
    "analysis_observational",
    "analysis_plan_deviations",
    "analysis_excluded",
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


def compute_tables(
    database: str | os.PathLike[str],
    alpha: float = 0.05,
    experiment_id: str | None = None,
    design: str = "paired",
    include_ineligible: bool = False,
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame], list[str]]:
    """Every estimate table (and the per-experiment cell sums for plots), read-only.

    ``design`` (for experiments without a registered config; a registered experiment's config
    decides its own): "paired" (every video in every arm; the platform's own) or "unpaired" (each
    video in one arm). Results of variants the ``variants`` table marks ineligible (checks not
    passed) are left out unless ``include_ineligible`` (an explicit override); either way they are
    listed with their reasons in ``analysis_excluded``. Returns ``(tables, cells_by_experiment, notes)``.
    """
    if design not in DESIGNS:
        raise ValueError(f"design {design!r}: expected one of {DESIGNS}")
    # Many small solves (thousands of rows by tens of columns): a 3500 x 35 least-squares solve
    # took 0.0012 s on one OpenBLAS thread and 0.24 s on two on the loaded 2-core machine.
    with threadpool_limits(limits=1, user_api="blas"):
        return _compute_tables(database, alpha, experiment_id, design, include_ineligible)


def _apply_eligibility(
    cells: pd.DataFrame, eligibility: pd.DataFrame | None, include_ineligible: bool
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(cells to analyse, the excluded-variants table). Variants the platform never rendered
    (e.g. arms of an imported export) are not judged and stay in."""
    if eligibility is None or eligibility.empty:
        return cells, pd.DataFrame()
    bad = eligibility[~eligibility["eligible"].astype(bool)]
    if bad.empty:
        return cells, pd.DataFrame()
    served = (
        cells.groupby(["video_id", "variant"], as_index=False)["impressions"].sum()
        if not cells.empty
        else pd.DataFrame(columns=["video_id", "variant", "impressions"])
    )
    listed = bad.merge(served, on=["video_id", "variant"], how="left")
    # no A/B results: the empty frame's impressions column is object-typed, so convert before filling
    listed["impressions"] = pd.to_numeric(listed["impressions"]).fillna(0).astype("int64")
    in_results = listed["impressions"] > 0
    listed["action"] = np.where(
        ~in_results,
        "not in the A/B results",
        np.where(include_ineligible, "kept: include_ineligible override", "results dropped from the analysis"),
    )
    excluded = listed[["video_id", "variant", "exclusion_reason", "impressions", "action"]]
    if include_ineligible or cells.empty:
        return cells, excluded
    key = pd.MultiIndex.from_frame(cells[["video_id", "variant"]])
    drop = key.isin(pd.MultiIndex.from_frame(bad[["video_id", "variant"]]))
    return cells[~drop], excluded


MODERATORS: dict[str, str] = {
    "achieved_delta": "achieved alignment change (manipulation check, the variant's own window)",
    "mean_contrast": "video's mean scene contrast",
}


def _video_lifts_with_moderators(
    cells: pd.DataFrame, deltas: pd.DataFrame | None, scenes: pd.DataFrame | None, windows: dict[str, str] | None = None
) -> pd.DataFrame:
    """Per-video log lifts (CTR and CVR) with the video-level moderators that are available."""
    frames = [video_variant_log_lifts(cells, m).assign(metric=m) for m in ("ctr", "cvr")]
    lifts = pd.concat(frames, ignore_index=True)
    if lifts.empty:
        return lifts
    if deltas is not None and not deltas.empty:
        lifts = lifts.merge(select_doses(deltas, windows), on=["video_id", "variant"], how="left")
    if scenes is not None and not scenes.empty and "contrast" in scenes:
        contrast = (
            scenes.groupby("video_id", as_index=False)["contrast"].mean().rename(columns={"contrast": "mean_contrast"})
        )
        lifts = lifts.merge(contrast, on="video_id", how="left")
    return lifts


@dataclass
class _WarehouseInputs:
    """Everything the estimates read from the warehouse, read once in one read-only connection."""

    cells: pd.DataFrame
    arms: pd.DataFrame
    deltas: pd.DataFrame | None
    scenes: pd.DataFrame | None
    registries: dict[str, tuple]
    configs: dict[str, ExperimentConfig]
    eligibility: pd.DataFrame | None

    @classmethod
    def read(cls, database: str | os.PathLike[str], experiment_id: str | None) -> _WarehouseInputs:
        with read_connection(database) as con:
            return cls(
                cells=queries.cell_totals(con, experiment_id),
                arms=queries.arm_totals(con),
                deltas=queries.achieved_deltas(con),
                scenes=queries.scene_rows(con),
                registries=registered_variants(con),
                configs=registered_configs(con),
                eligibility=require_human_check(
                    queries.variant_eligibility(con), registered_configs(con), stored_human_verdicts(con)
                ),
            )


@dataclass
class _TableParts:
    """The frames of every ``analysis_*`` table as they are produced, and the notes for the page."""

    parts: dict[str, list[pd.DataFrame]] = field(default_factory=lambda: {name: [] for name in TABLES})
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, frame: pd.DataFrame) -> None:
        self.parts[name].append(frame)

    def tables(self) -> dict[str, pd.DataFrame]:
        """Each table's frames stacked in the order they came (empty ones left out)."""
        tables = {}
        for name, frames in self.parts.items():
            frames = [f for f in frames if f is not None and not f.empty]
            tables[name] = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        return tables


def _relabel_control(cells: pd.DataFrame, registry: tuple) -> tuple[pd.DataFrame, list[str]]:
    """Cells with the experiment's control arm labelled BASELINE, and the arms in registry order."""
    control = control_arm(registry)
    if control != BASELINE:  # the estimators label the control arm BASELINE
        cells = cells.assign(variant=cells["variant"].replace({control: BASELINE}))
    order = [(BASELINE if v == control else v) for v in variant_names(registry)]
    order += sorted(set(cells["variant"]) - set(order))  # arms outside the registry come last
    return cells, order


def _cannot_analyse(exp: str, cells: pd.DataFrame) -> str | None:
    """Why an experiment gets no estimates at all (no control arm), or None."""
    if BASELINE not in set(cells["variant"]):
        return f"experiment {exp}: no baseline arm, no lifts"
    return None


def _analyse_single_creative(experiment: _Experiment, alpha: float, out: _TableParts) -> None:
    """A test with one creative per arm: arm rates, two-proportion tests and the k-arm chi-square, iid."""
    exp, cells = experiment.experiment_id, experiment.cells
    out.notes.append(
        f"experiment {exp}: one creative per arm (no video seen in two arms): no cluster-robust errors exist, "
        "so lifts use iid errors (two-proportion z-test, Katz log-ratio interval) and Pearson's k-arm chi-square; "
        "they are too narrow if impressions were served in correlated batches"
    )
    out.add("analysis_lift", _with_experiment(single_creative_lifts(cells, alpha, experiment.order), exp))
    arms = [arms_chi_square(cells, m) for m in ("ctr", "cvr")]
    tests = pd.concat(arms, ignore_index=True)
    out.add("analysis_arms_test", _with_experiment(tests[tests["test"] == "pearson"], exp))


def _meta_frames(ind: pd.DataFrame, video_lifts: pd.DataFrame, alpha: float) -> list[pd.DataFrame]:
    """Industries pooled, then a meta-regression of per-video lifts on each available moderator."""
    pooled = pool_industries(ind, alpha=alpha, video_lifts=video_lifts) if not ind.empty else pd.DataFrame()
    meta = [pooled.assign(analysis="industries pooled")] if not pooled.empty else []
    for moderator, label in MODERATORS.items():
        if moderator in video_lifts and video_lifts[moderator].notna().any():
            reg = moderator_regression(video_lifts, moderator, alpha=alpha)
            if not reg.empty:
                meta.append(reg.assign(analysis=f"meta-regression of per-video lifts on {moderator} ({label})"))
    return [m for m in meta if not m.empty]


def _heterogeneity_frame(ind: pd.DataFrame, tests: pd.DataFrame) -> pd.DataFrame:
    """Per-industry lifts and the heterogeneity tests in one table, told apart by ``kind``."""
    if ind.empty and tests.empty:
        return pd.DataFrame()
    if not ind.empty:
        ind = ind.assign(kind="industry_lift")
    if not tests.empty:
        tests = tests.assign(kind="test")
    return pd.concat([t for t in (ind, tests) if not t.empty], ignore_index=True)


def _mde_guardrail(exp: str, lift: pd.DataFrame, alpha: float) -> pd.DataFrame | None:
    """Planning: the smallest CTR lift this experiment could detect, with its measured design effect."""
    ctr = lift[lift["metric"] == "ctr"]
    if ctr.empty:
        return None
    deff = float(np.nanmedian(ctr["design_effect"]))
    n_arm = float(ctr["baseline_den"].iloc[0])
    base = float(ctr["baseline_rate"].iloc[0])
    if not (base > 0 and np.isfinite(deff)):
        return None
    row = {
        "experiment_id": exp,
        "check": "mde_ctr_relative",
        "metric": "ctr",
        "statistic": np.nan,
        "df": np.nan,
        "p_value": np.nan,
        "flagged": False,
        "threshold": np.nan,
        "value": mde_relative(base, n_arm, max(deff, 1.0), alpha, 0.8),
        "detail": (
            f"80% power at alpha={alpha}: baseline CTR {base:.4f}, {n_arm:.0f} impressions/arm, "
            f"measured design effect {deff:.2f}"
        ),
    }
    return pd.DataFrame([row])


@dataclass(frozen=True)
class _Experiment:
    """One experiment as the estimators see it: cells with the control labelled BASELINE, arm order, registry, design."""

    experiment_id: str
    cells: pd.DataFrame
    order: list[str]
    registry: tuple
    design: str

    @classmethod
    def of(cls, exp: str, cells: pd.DataFrame, inputs: _WarehouseInputs, default_design: str) -> _Experiment:
        # the experiment's variant registry (the default one when it was never registered)
        registry = inputs.registries.get(str(exp), DEFAULT_VARIANTS)
        cells, order = _relabel_control(cells, registry)
        config = inputs.configs.get(str(exp))
        design = config.design if config is not None else default_design  # the experiment's config decides
        return cls(exp, cells, order, registry, design)


def _analyse_experiment(experiment: _Experiment, inputs: _WarehouseInputs, alpha: float, out: _TableParts) -> None:
    """Every estimate of one experiment into ``out``."""
    exp, cells, design = experiment.experiment_id, experiment.cells, experiment.design
    g = cells["video_id"].nunique()
    if g < SMALL_SAMPLE_CLUSTERS:
        out.notes.append(
            f"experiment {exp}: {g} videos (< {SMALL_SAMPLE_CLUSTERS} clusters): intervals and tests use "
            f"{METHOD_CR2}; joint tests use a Hotelling F, not chi-square"
        )
    lift = lift_table(cells, alpha=alpha, variants=experiment.order, design=design, glm=design == "paired")
    out.add("analysis_lift", _with_experiment(lift, exp))
    if design == "paired":
        block = complete_block_cells(cells)
        if block["video_id"].nunique() and BASELINE in set(block["variant"]):
            complete = lift_table(block, alpha=alpha, variants=experiment.order, design=design)
            out.add("analysis_lift_complete_block", _with_experiment(complete, exp))
    arms = [arms_chi_square(cells, m, design=design) for m in ("ctr", "cvr")]
    out.add("analysis_arms_test", _with_experiment(pd.concat(arms, ignore_index=True), exp))
    ind, tests = heterogeneity_tables(cells, alpha=alpha)
    windows = dose_windows(experiment.registry)
    video_lifts = _video_lifts_with_moderators(cells, inputs.deltas, inputs.scenes, windows)
    meta = _meta_frames(ind, video_lifts, alpha)
    if meta:
        out.add("analysis_meta", _with_experiment(pd.concat(meta, ignore_index=True), exp))
    if ind.empty and cells["industry"].nunique() > 0:
        per = cells.groupby("industry")["video_id"].nunique()
        out.notes.append(
            f"experiment {exp}: no industry has 2 or more videos ({', '.join(f'{i}: {n}' for i, n in per.items())}); "
            "no per-industry lifts"
        )
    out.add("analysis_heterogeneity", _with_experiment(_heterogeneity_frame(ind, tests), exp))
    timed = timing_variants(experiment.registry)
    for metric in ("ctr", "cvr"):
        out.add("analysis_timing", _with_experiment(timing_contrasts(cells, metric, alpha, timing_variants=timed), exp))
        dose = dose_response(cells, inputs.deltas, metric, alpha, windows)
        out.add("analysis_dose_response", _with_experiment(dose, exp))
    mde = _mde_guardrail(exp, lift, alpha)
    if mde is not None:
        out.add("analysis_guardrails", mde)


def _note_inputs(cells: pd.DataFrame, deltas: pd.DataFrame | None, excluded: pd.DataFrame, out: _TableParts) -> None:
    """Notes on what the warehouse lacks, and the excluded-variants table."""
    if not excluded.empty:
        out.add("analysis_excluded", excluded)
        dropped = excluded[excluded["action"] == "results dropped from the analysis"]
        if len(dropped):
            out.notes.append(
                f"{len(dropped)} video x variant result(s) left out: the variant did not pass its checks "
                "(see 'Excluded variants'; align-report --include-ineligible keeps them)"
            )
    if cells.empty:
        out.notes.append("no A/B results in the warehouse (table ab_results absent or empty)")
    if deltas is None:
        out.notes.append("manipulation_check absent: no dose-response")


def _compute_tables(
    database: str | os.PathLike[str],
    alpha: float,
    experiment_id: str | None,
    default_design: str,
    include_ineligible: bool = False,
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame], list[str]]:
    inputs = _WarehouseInputs.read(database, experiment_id)
    cells_all, excluded = _apply_eligibility(inputs.cells, inputs.eligibility, include_ineligible)
    out = _TableParts()
    _note_inputs(cells_all, inputs.deltas, excluded, out)
    arms = inputs.arms[inputs.arms["experiment_id"] == experiment_id] if experiment_id else inputs.arms
    srm = srm_test(arms) if not arms.empty else pd.DataFrame()
    if not srm.empty:
        out.add("analysis_guardrails", srm.assign(metric="impressions", value=np.nan))
    cells_by_exp: dict[str, pd.DataFrame] = {}
    for exp, cells in cells_all.groupby("experiment_id"):
        experiment = _Experiment.of(exp, cells, inputs, default_design)
        cells_by_exp[exp] = experiment.cells
        why = _cannot_analyse(exp, experiment.cells)
        if why is not None:
            out.notes.append(why)
            continue
        if is_single_creative(experiment.cells):
            _analyse_single_creative(experiment, alpha, out)
            continue
        _analyse_experiment(experiment, inputs, alpha, out)
    out.add("analysis_observational", observational_table(inputs.scenes, alpha))
    return out.tables(), cells_by_exp, out.notes


def write_csv_tables(tables: dict[str, pd.DataFrame], directory: Path) -> list[Path]:
    """Every non-empty table as ``<name>.csv`` (all columns) beside the HTML, each written atomically."""
    return [
        atomic_write_text(directory / f"{name}.csv", frame.to_csv(index=False))
        for name, frame in tables.items()
        if frame is not None and not frame.empty
    ]


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

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("analysis", "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)
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
    for ax, metric in zip(axes[0], metrics, strict=False):
        part = lift[lift["metric"] == metric]
        _forest(
            ax,
            list(part["variant"]),
            part["rel_lift"].to_numpy(),
            part["rel_ci_low"].to_numpy(),
            part["rel_ci_high"].to_numpy(),
            _METRIC_LABEL[metric],
        )
    fig.tight_layout()
    return _png(fig)


def plot_industry_forest(het: pd.DataFrame, metric: str = "ctr") -> str | None:
    """Forest plot of relative lift per variant x industry (base64 PNG)."""
    if het.empty or "industry" not in het:
        return None
    part = het[(het.get("kind") == "industry_lift") & (het["metric"] == metric)].sort_values(["variant", "industry"])
    if part.empty:
        return None
    labels = [f"{v} | {i}" for v, i in zip(part["variant"], part["industry"], strict=False)]
    fig, ax = plt.subplots(figsize=(6, 0.28 * len(labels) + 1.2))
    _forest(
        ax,
        labels,
        part["rel_lift"].to_numpy(),
        part["rel_ci_low"].to_numpy(),
        part["rel_ci_high"].to_numpy(),
        f"{_METRIC_LABEL[metric]} lift by industry",
    )
    fig.tight_layout()
    return _png(fig)


def plot_timing(
    lift: pd.DataFrame,
    cells: pd.DataFrame,
    dose: pd.DataFrame,
    deltas: pd.DataFrame | None,
    registry: tuple = DEFAULT_VARIANTS,
) -> str:
    """Lift by timing window (the registry's timing arms, early to late) and the dose-response fit."""
    has_dose = not dose.empty and deltas is not None
    fig, axes = plt.subplots(1, 2 if has_dose else 1, figsize=(9 if has_dose else 4.5, 3.2), squeeze=False)
    ax = axes[0][0]
    order = list(timing_variants(registry))
    window_of = {s.name: s.window for s in registry}
    for offset, metric in ((-0.1, "ctr"), (0.1, "cvr")):
        part = lift[(lift["metric"] == metric) & lift["variant"].isin(order)].set_index("variant").reindex(order)
        x = np.arange(len(order)) + offset
        est = part["rel_lift"].to_numpy() * 100
        ax.errorbar(
            x,
            est,
            yerr=[est - part["rel_ci_low"].to_numpy() * 100, part["rel_ci_high"].to_numpy() * 100 - est],
            fmt="o",
            capsize=3,
            label=_METRIC_LABEL[metric],
        )
    ax.axhline(0, color="grey", lw=1, ls="--")
    ax.set_xticks(range(len(order)), [window_of[v] for v in order])
    ax.set_ylabel("relative lift vs baseline (%)")
    ax.set_title("Timing of the boost")
    ax.legend()
    if has_dose:
        ax2 = axes[0][1]
        ctr_dose = dose[dose["metric"] == "ctr"]
        pts = video_variant_log_lifts(cells, "ctr")
        pts = pts.merge(select_doses(deltas, dose_windows(registry)), on=["video_id", "variant"])
        ax2.scatter(pts["achieved_delta"], pts["log_lift"], s=8, alpha=0.4)
        if not ctr_dose.empty:
            xs = np.linspace(pts["achieved_delta"].min(), pts["achieved_delta"].max(), 20)
            ax2.plot(
                xs,
                ctr_dose["intercept"].iat[0] + ctr_dose["slope"].iat[0] * xs,
                color="tab:red",
                label=f"slope {ctr_dose['slope'].iat[0]:.2f} ± {ctr_dose['slope_se'].iat[0]:.2f}",
            )
            ax2.legend()
        ax2.set_xlabel("achieved alignment change")
        ax2.set_ylabel("log CTR ratio vs own baseline")
        ax2.set_title("Dose-response")
    fig.tight_layout()
    return _png(fig)


def _srm_text(guardrails: pd.DataFrame, exp: str) -> str:
    """The experiment's sample-ratio-mismatch verdict, as the headline states it."""
    srm = (
        guardrails[(guardrails.get("experiment_id") == exp) & (guardrails.get("check") == "sample_ratio_mismatch")]
        if not guardrails.empty
        else pd.DataFrame()
    )
    if not srm.empty and bool(srm["flagged"].iat[0]):
        return f"SRM FLAGGED (p={srm['p_value'].iat[0]:.2g}): lifts not trustworthy"
    return "no sample-ratio mismatch"


def _corrections(frame: pd.DataFrame, column: str) -> list[str]:
    """The small-sample corrections a table's rows name in ``column``, sorted, once each."""
    return sorted({m for m in frame.get(column, pd.Series(dtype=str)) if isinstance(m, str) and m})


def headline_markdown(lift: pd.DataFrame, guardrails: pd.DataFrame) -> str:
    """One markdown table per experiment: relative CTR / CVR / watch-time lift with 95% CI."""
    if lift.empty:
        return "_No A/B results to report._"
    lines = []
    for exp, part in lift.groupby("experiment_id"):
        lines.append(f"**{exp}** ({_experiment_videos(part)} videos; {_srm_text(guardrails, exp)})\n")
        lines.append(
            "| variant | videos | CTR lift [95% CI] | p | CVR lift [95% CI] | p | watch-time lift [95% CI] | what it means |"
        )
        lines.append("|---|---|---|---|---|---|---|---|")
        for variant in part["variant"].unique():
            cells = _headline_cells(part, variant)[0]
            lines.append(
                f"| {variant} | {_videos_cell(part, variant)} | "
                + " | ".join(cells)
                + f" | {_meaning(part, variant)} |"
            )
        lines.append(
            "\n_Ratio-of-sums lift on the videos where both the arm and the control ran (matched), clustered by "
            f"video; correction: {'; '.join(_corrections(part, 'se_method')) or 'none'}._"
        )
        lines.append("")
    return "\n".join(lines)


def _experiment_videos(part: pd.DataFrame) -> int:
    """Videos in the experiment: those the control ran in (every contrast is matched to them)."""
    column = "n_videos_control" if "n_videos_control" in part else "n_videos"
    return int(part[column].max())


def _metric_row(part: pd.DataFrame, variant: str, metric: str = "ctr") -> pd.Series | None:
    rows = part[(part["variant"] == variant) & (part["metric"] == metric)]
    return None if rows.empty else rows.iloc[0]


def _videos_cell(part: pd.DataFrame, variant: str) -> str:
    """'matched videos' with, when fewer, how many the control ran in."""
    row = _metric_row(part, variant)
    if row is None or not np.isfinite(row.get("n_videos", np.nan)):
        return "n/a"
    n, total = int(row["n_videos"]), int(row.get("n_videos_control", row["n_videos"]))
    return f"{n}" if n == total else f"{n} of {total}"


def _meaning(part: pd.DataFrame, variant: str) -> str:
    """The CTR row in words: higher, lower or no detectable difference at the row's alpha."""
    row = _metric_row(part, variant)
    if row is None or not np.isfinite(row.get("p_value", np.nan)):
        return "no estimate (see note)"
    lo, hi = row["rel_ci_low"], row["rel_ci_high"]
    if lo > 0:
        return f"CTR higher than control (at least {lo:+.1%})"
    if hi < 0:
        return f"CTR lower than control (at least {hi:+.1%})"
    return "no CTR difference detectable (interval spans 0)"


def _pct(v: float) -> str:
    return f"{v:+.1%}" if np.isfinite(v) else "n/a"


def _headline_cells(part: pd.DataFrame, variant: str) -> tuple[list[str], list[str]]:
    """(CTR lift, p, CVR lift, p, watch-time lift) of one variant, and the notes of its rows."""
    cells, notes = [], []
    for metric in ("ctr", "cvr", "watch_time"):
        row = part[(part["variant"] == variant) & (part["metric"] == metric)]
        if row.empty:
            cells += ["n/a", ""] if metric != "watch_time" else ["n/a"]
            continue
        r = row.iloc[0]
        cells.append(f"{_pct(r.rel_lift)} [{_pct(r.rel_ci_low)}, {_pct(r.rel_ci_high)}]")
        if metric != "watch_time":
            cells.append(f"{r.p_value:.3g}" if np.isfinite(r.p_value) else "n/a")
        note = getattr(r, "note", "")
        if isinstance(note, str) and note:
            notes.append(f"{_METRIC_LABEL[metric]}: {note}")
    return cells, notes


def _headline_rows(part: pd.DataFrame) -> list[list[str]]:
    """The headline table's rows: variant, the five lift cells, the notes."""
    rows = []
    for variant in part["variant"].unique():
        cells, notes = _headline_cells(part, variant)
        rows.append([str(variant), _videos_cell(part, variant), *cells, _meaning(part, variant), "; ".join(notes)])
    return rows


def headline_html(lift: pd.DataFrame, guardrails: pd.DataFrame) -> str:
    """The headline as real HTML tables (one per experiment) with the model and correction used."""
    experiments = [
        {
            "experiment_id": exp,
            "n_videos": _experiment_videos(part),
            "design": part["design"].iat[0] if "design" in part else "paired",
            "srm_text": _srm_text(guardrails, exp),
            "rows": _headline_rows(part),
            "corrections": "; ".join(_corrections(part, "se_method")) or "none (not estimable)",
        }
        for exp, part in (lift.groupby("experiment_id") if not lift.empty else [])
    ]
    return _TEMPLATES.get_template("headline.html").render(experiments=experiments)


# what produced each table: the model, then the correction (a column with the correction actually
# used per row is listed under it)
TABLE_INFO: dict[str, tuple[str, str, str | None]] = {
    "analysis_guardrails": (
        "Guardrails (sample-ratio mismatch, minimum detectable effect)",
        "Pearson chi-square goodness of fit of served impressions vs planned shares (alarm at p < 0.001); "
        "MDE: two-sample power for proportions at the measured design effect.",
        None,
    ),
    "analysis_lift": (
        "Lift vs baseline (matched: the videos where both arms ran)",
        "Ratio-of-sums estimator on the videos where both the arm and the control ran (n_videos; "
        "n_videos_variant / n_videos_control: videos each arm ran in), delta-method (cluster influence) variance "
        "by video; glm_*: Poisson GLM with video fixed effects and quasi (Pearson) scale, t(G-1), as a "
        "cross-check; iid two-proportion z / Welch z for comparison only.",
        "se_method",
    ),
    "analysis_lift_complete_block": (
        "Lift vs baseline, complete blocks (alternative: only the videos in which every arm ran)",
        "The same estimator restricted to the videos with every arm: all arms compared on one set of videos, "
        "at the cost of the videos some arm missed.",
        "se_method",
    ),
    "analysis_arms_test": (
        "Do the arms differ at all? (test of k proportions)",
        "Pearson chi-square on arms x (events, non-events) (ignores clustering), and the joint "
        "cluster-robust Wald test of every arm = baseline.",
        "method",
    ),
    "analysis_heterogeneity": (
        "Heterogeneity by industry",
        "Per-industry lifts (as in the lift table) with Holm / Benjamini-Hochberg adjusted p; "
        "Cochran's Q of the per-industry log lifts; binomial GLM variant x industry interaction, "
        "cluster-robust by video.",
        "se_method",
    ),
    "analysis_meta": (
        "Meta-analysis: industries pooled, and meta-regression on a video-level moderator",
        "Random-effects pooling of the estimable per-industry log lifts (2+ videos with both arms; the 'unknown' "
        "bucket left out), each with a t-equivalent variance (its own df carried into the weight); tau^2 by DL "
        "and REML, z test, and Knapp-Hartung truncated at 1 (never narrower than the model SE when Q < df). "
        "READ the row with recommended = True: REML + truncated Knapp-Hartung fitted directly to the per-video "
        "log ratios of the same videos (binomial variances from large counts, heterogeneity estimated from "
        "every video instead of 2-4 industry means). Meta-regression of per-video log lifts on achieved "
        "alignment change (REML, Knapp-Hartung).",
        None,
    ),
    "analysis_timing": (
        "Timing contrasts (ratios of rates between timing variants)",
        "Log-rate differences between timing arms from the same videos (paired), delta method; joint "
        "equality test across timings.",
        "se_method",
    ),
    "analysis_dose_response": (
        "Dose-response on achieved alignment change",
        "WLS of each video-variant's log lift on the achieved alignment change (inverse binomial "
        "variance weights), clustered by video.",
        "se_method",
    ),
    "analysis_excluded": (
        "Excluded variants (did not pass their checks)",
        "From the variants table's eligible / exclusion_reason: only eligible variants enter the "
        "analysis unless the include_ineligible override is set.",
        None,
    ),
    "analysis_observational": (
        "Observational scene model (not causal)",
        "OLS of scene CTR / CVR on attention proportion with controls, cluster-robust by video "
        "(CR2 + Satterthwaite df below 30 videos, else CR1 with t(G-1)).",
        "se_method",
    ),
}


#: The columns a table shows on the page (the rest are in its CSV file beside the HTML).
_LIFT_COLUMNS = (
    "experiment_id", "metric", "variant", "n_videos", "n_videos_variant", "n_videos_control", "baseline_rate",
    "variant_rate", "rel_lift", "rel_ci_low", "rel_ci_high", "p_value", "df", "glm_rel_lift", "glm_p_value", "note",
)  # fmt: skip
PAGE_COLUMNS: dict[str, tuple[str, ...]] = {
    "analysis_lift": _LIFT_COLUMNS,
    "analysis_lift_complete_block": _LIFT_COLUMNS,
    "analysis_heterogeneity": (
        "experiment_id", "industry", "metric", "variant", "test", "n_videos", "rel_lift", "rel_ci_low",
        "rel_ci_high", "statistic", "df", "p_value", "p_holm", "note",
    ),
    "analysis_meta": (
        "experiment_id", "metric", "variant", "level", "recommended", "method", "test", "term", "k", "estimate",
        "ci_low", "ci_high", "p_value", "tau2", "i2", "q_p", "note",
    ),
    "analysis_timing": (
        "experiment_id", "metric", "contrast", "n_videos", "ratio", "ratio_ci_low", "ratio_ci_high", "statistic",
        "df", "p_value", "note",
    ),
    "analysis_dose_response": (
        "experiment_id", "metric", "model", "slope", "ci_low", "ci_high", "p_value", "df", "n_videos",
    ),
}  # fmt: skip


@dataclass(frozen=True)
class _TableSection:
    """One estimate table on the page: title, model text, corrections used, the table (None: no rows)
    and the CSV file beside the HTML that holds every column."""

    title: str
    model: str
    corrections: list[str]
    table: Markup | None
    csv: str = ""


def _table_section(
    frame: pd.DataFrame, title: str, model: str = "", method_column: str | None = None, name: str = ""
) -> _TableSection:
    corrections = _corrections(frame, method_column) if model and method_column and not frame.empty else []
    if frame.empty:
        return _TableSection(title, model, corrections, None)
    shown = [c for c in PAGE_COLUMNS.get(name, tuple(frame.columns)) if c in frame]
    # pandas escapes the cells itself
    table = frame[shown].to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="", classes="t", border=0)
    return _TableSection(title, model, corrections, Markup(table), f"tables/{name}.csv" if name else "")


def _table_sections(tables: dict[str, pd.DataFrame]) -> list[_TableSection]:
    """Every estimate table in TABLE_INFO order; heterogeneity split into lifts and tests, meta per analysis."""
    sections = []
    for name, (title, model, method_column) in TABLE_INFO.items():
        frame = tables.get(name, pd.DataFrame())
        if name == "analysis_heterogeneity" and not frame.empty and "kind" in frame:
            lifts = frame[frame["kind"] == "industry_lift"].dropna(axis=1, how="all")
            tests = frame[frame["kind"] == "test"].dropna(axis=1, how="all")
            sections.append(
                _table_section(lifts, "Heterogeneity by industry: lift per industry", model, method_column, name)
            )
            sections.append(_table_section(tests, "Heterogeneity by industry: tests", model, "note", name))
        elif name == "analysis_meta" and not frame.empty and "analysis" in frame:
            for label, part in frame.groupby("analysis", sort=False):
                part = part.dropna(axis=1, how="all")
                sections.append(_table_section(part, f"Meta-analysis: {label}", model, None, name))
        else:
            sections.append(_table_section(frame, title, model, method_column, name))
    return sections


def _small_sample_notes(lift: pd.DataFrame) -> list[str]:
    """What the page did about few clusters, said once, near the top."""
    items = [
        f"Below {SMALL_SAMPLE_CLUSTERS} videos (clusters) every interval and test uses the CR2 (Bell-McCaffrey) "
        "cluster-robust covariance with Satterthwaite degrees of freedom (column df), and joint tests use the "
        "Hotelling-T^2 F approximation on (q, G - q) df: a handful of videos gives wide intervals and never p = 0.",
        "At or above that, the delta-method covariance with the G/(G-1) factor (paired design) or each arm's "
        "G_a/(G_a-1) (unpaired design) and t(G-1) is used.",
        "Industry pooling: read the row marked recommended (video-level REML + truncated Knapp-Hartung); "
        "industries with fewer than 2 videos per arm are not estimable and are not pooled.",
        "A row whose estimate cannot be computed (no events, separation, a saturated model, too few clusters) "
        "says why in its note column.",
    ]
    if not lift.empty and "n_videos" in lift:
        for exp, part in lift.groupby("experiment_id"):
            items.append(
                f"{exp}: {int(part['n_videos'].max())} videos; corrections used: "
                + "; ".join(sorted({m for m in part["se_method"] if isinstance(m, str) and m}))
            )
    return items


def methods_paragraph(lift: pd.DataFrame) -> str:
    """One paragraph naming the model and the corrections the headline's numbers come from."""
    if lift.empty:
        return "No A/B results: no estimates."
    corrections = "; ".join(_corrections(lift, "se_method")) or "none"
    designs = ", ".join(sorted({str(d) for d in lift.get("design", pd.Series(["paired"]))}))
    return (
        f"Each arm is compared with the control on the videos where both ran (matched contrasts; design: {designs}). "
        "The lift is the ratio of the arms' summed rates (clicks / impressions, conversions / clicks, watch seconds / "
        "impression) minus one; its interval is built on the log scale from the per-video (cluster) influence "
        f"values, so correlated impressions of one video count once. Small-sample correction: {corrections}. "
        "A Poisson GLM with video fixed effects (quasi scale, t(G-1)) is shown beside each lift as a cross-check, "
        "and the complete-block table (videos with every arm) as the alternative analysis. Subgroups with fewer than "
        "2 matched videos are not estimated; the meta-analysis pools only estimable industries (read the row marked "
        "recommended). The sample-ratio check compares served impressions with the planned split within each video "
        "over the arms it ran. Every table, with all its columns, is in the appendix and in tables/*.csv."
    )


def _plan_citations(deviations: pd.DataFrame | None) -> list[dict[str, Any]]:
    """Each experiment's plan hash and file (None: no plan) and every deviation from the plan."""
    if deviations is None or deviations.empty:
        return []
    plans = []
    for exp, part in deviations.groupby("experiment_id", sort=True):
        sha = part["plan_sha256"].iat[0]
        plans.append(
            {
                "experiment_id": str(exp),
                "sha256": str(sha) if sha else None,
                "plan_file": str(part["plan_file"].iat[0]),
                "deviations": [str(d) for d in part["deviation"]],
            }
        )
    return plans


def _experiment_plots(
    tables: dict[str, pd.DataFrame],
    cells_by_exp: dict[str, pd.DataFrame],
    deltas: pd.DataFrame | None,
    registries: dict[str, tuple] | None,
) -> list[dict[str, Any]]:
    """Each experiment with lifts: its lift forest, industry forest (None without industries) and timing plots."""
    lift_all, het_all = tables["analysis_lift"], tables["analysis_heterogeneity"]
    dose_all = tables["analysis_dose_response"]
    plots = []
    for exp, cells in cells_by_exp.items():
        lift = lift_all[lift_all["experiment_id"] == exp] if not lift_all.empty else pd.DataFrame()
        if lift.empty:
            continue
        lift_forest = plot_lift_forest(lift)
        het = het_all[het_all["experiment_id"] == exp] if not het_all.empty else pd.DataFrame()
        industry_forest = plot_industry_forest(het)
        dose = dose_all[dose_all["experiment_id"] == exp] if not dose_all.empty else pd.DataFrame()
        registry = (registries or {}).get(str(exp), DEFAULT_VARIANTS)
        plots.append(
            {
                "experiment_id": str(exp),
                "lift_forest": lift_forest,
                "industry_forest": industry_forest,
                "timing": plot_timing(lift, cells, dose, deltas, registry),
            }
        )
    return plots


def render_html(
    tables: dict[str, pd.DataFrame],
    cells_by_exp: dict[str, pd.DataFrame],
    deltas: pd.DataFrame | None,
    headline: str,
    notes: list[str],
    registries: dict[str, tuple] | None = None,
    banner: str = "",
    pretest: dict[str, pd.DataFrame] | None = None,
) -> str:
    """A self-contained HTML page: headline table, notes, per-experiment plots and every estimate table.

    ``headline`` is HTML (``headline_html``); markdown text is escaped into a block for callers
    of the old API. ``registries``: each experiment's variant registry (timing plot order).
    ``pretest``: the pretest tables (:func:`~analysis.pretest.pretest_report_frames`); none, no section.
    The page is ``templates/report.html``.
    """
    headline_is_html = headline.lstrip().startswith("<")
    return _TEMPLATES.get_template("report.html").render(
        banner=banner,
        headline=Markup(headline) if headline_is_html else headline,
        headline_is_html=headline_is_html,
        plans=_plan_citations(tables.get("analysis_plan_deviations", pd.DataFrame())),
        notes=notes,
        small_sample_notes=_small_sample_notes(tables["analysis_lift"]),
        methods=methods_paragraph(tables["analysis_lift"]),
        experiment_plots=_experiment_plots(tables, cells_by_exp, deltas, registries),
        sections=_table_sections(tables),
        pretest_sections=[
            _table_section(frame, REPORT_TABLES[name][0], REPORT_TABLES[name][1])
            for name, frame in (pretest or {}).items()
        ],
    )


def build_report(
    database: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    alpha: float = 0.05,
    experiment_id: str | None = None,
    write_to_warehouse: bool = True,
    design: str = "paired",
    include_ineligible: bool = False,
) -> Report:
    """Compute every estimate, replace the ``analysis_*`` tables, write ``report.html`` and ``headline.md``."""
    tables, cells_by_exp, notes = compute_tables(
        database, alpha=alpha, experiment_id=experiment_id, design=design, include_ineligible=include_ineligible
    )
    with read_connection(database) as con:
        deltas = queries.achieved_deltas(con)
        registries = registered_variants(con)
        pretest = pretest_report_frames(con)
    tables["analysis_plan_deviations"] = deviations_table(
        database, cells_by_exp, alpha, tables.get("analysis_excluded")
    )
    simulated = simulated_experiments(database)
    tables = label_simulated(tables, simulated)
    if write_to_warehouse:
        write_tables(database, tables)
    banner = simulated_banner(simulated)
    headline = headline_markdown(tables["analysis_lift"], tables["analysis_guardrails"])
    headline = f"**{banner}**\n\n{headline}" if banner else headline
    page = render_html(
        tables,
        cells_by_exp,
        deltas,
        headline_html(tables["analysis_lift"], tables["analysis_guardrails"]),
        notes,
        registries,
        banner=banner,
        pretest=pretest,
    )
    out = Path(output_dir)
    write_csv_tables(tables, out / "tables")
    html_path = atomic_write_text(out / "report.html", page)
    atomic_write_text(out / "headline.md", headline + "\n")
    return Report(
        html_path=html_path, tables=tables, headline_markdown=headline, experiments=sorted(cells_by_exp), notes=notes
    )
