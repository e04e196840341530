"""Pre-registration: the analysis plan, written from the experiment config before results arrive.

The plan states what will be tested and how, before anyone sees an outcome: the hypotheses
(each treatment and the placebo against the control, the timing contrasts between boosts of
the same factor in different thirds, the dose-response slope), the primary metric, the
multiple-testing corrections, the minimum detectable effect at the planned sample size, and
the stopping rule. Its canonical JSON (sorted keys, no whitespace) is hashed with sha256 and
stored twice: as a file ``<plans_dir>/<experiment_id>.<sha256[:12]>.json`` and as a row of the
warehouse table ``analysis_plans``. A plan is refused once results for the experiment exist
(unless explicitly allowed, and then the plan itself records that it came late).

The report cites the hash and lists every deviation of the executed analysis from the plan
(arms that ran but were not planned or were planned but never ran, fewer videos or impressions
than planned, an experiment stopped before its planned days, a plan filed after results, a
different alpha).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from align_core.experiments.config import ExperimentConfig, register_experiment_config
from align_core.experiments.experiments_table import save_experiment_file
from align_core.io.atomic import atomic_write_text
from align_core.io.warehouse import read_connection, table_exists, write_connection
from align_core.stimuli.plans import VariantSpec, dose_windows, timing_variants
from analysis.arms import BASELINE
from analysis.guardrails import design_effect, mde_relative

__all__ = [
    "analysis_plan",
    "deviations_table",
    "plan_deviations",
    "plan_hash",
    "register_plan",
    "verify_plan_file",
]

PLANS_DDL = """
CREATE TABLE IF NOT EXISTS analysis_plans (
    experiment_id VARCHAR NOT NULL,
    sha256 VARCHAR NOT NULL,
    registered_at TIMESTAMP NOT NULL,
    registered_after_results BOOLEAN NOT NULL,
    plan_json VARCHAR NOT NULL,
    path VARCHAR NOT NULL,
    PRIMARY KEY (experiment_id, sha256)
)
"""
PLAN_VERSION = 1
CORRECTIONS = {
    "confirmatory": "Holm across the confirmatory family (every treatment and placebo vs control, primary metric)",
    "timing": "Holm across the timing contrasts; the joint Wald test of equal timing is reported unadjusted",
    "industry": "Benjamini-Hochberg across industries within each variant (exploratory)",
    "secondary": "secondary metrics are exploratory: reported with unadjusted intervals",
}


@dataclass(frozen=True)
class RegisteredPlan:
    experiment_id: str
    sha256: str
    path: Path
    plan: dict[str, Any]
    registered_after_results: bool


def canonical_json(plan: dict[str, Any]) -> str:
    return json.dumps(plan, sort_keys=True, separators=(",", ":"), default=str)


def plan_hash(plan: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(plan).encode("utf-8")).hexdigest()


def _expected_direction(spec: VariantSpec) -> str:
    """What the plan expects of an arm: a boost higher, a reduction lower, a creative either way."""
    if spec.role == "placebo":
        return "no difference (placebo)"
    if spec.kind == "boost":
        return "higher"
    if spec.kind == "reduce":
        return "lower"
    return "different from the control, either way (two-sided: a creative arm has no planned direction)"


def _confirmatory_hypotheses(config: ExperimentConfig) -> list[dict[str, Any]]:
    """Every treatment and the placebo against the control, on the primary metric."""
    control = config.control
    return [
        {
            "id": f"{config.primary_metric}:{s.name}_vs_{control}",
            "metric": config.primary_metric,
            "contrast": f"{s.name} vs {control}",
            "expected": _expected_direction(s),
            "test": "two-sided, relative lift (log ratio of rates), clustered by video",
        }
        for s in config.variants
        if s.name != control
    ]


def _timing_hypotheses(config: ExperimentConfig) -> list[dict[str, Any]]:
    """Pairwise contrasts of the timing arms and, with three or more, their joint equality."""
    timed = timing_variants(config.variants)
    timing = [
        {
            "id": f"{config.primary_metric}:{a}_vs_{b}",
            "metric": config.primary_metric,
            "contrast": f"{a} vs {b}",
            "expected": "earlier attention on the product lifts more",
        }
        for a, b in combinations(timed, 2)
    ]
    if len(timed) >= 3:
        timing.append(
            {
                "id": f"{config.primary_metric}:joint_timing",
                "metric": config.primary_metric,
                "contrast": "joint: " + " = ".join(timed),
                "test": "Wald, cluster-robust",
            }
        )
    return timing


def _dose_hypotheses(config: ExperimentConfig) -> list[dict[str, Any]]:
    """The dose-response slope, when some arm has a dose window."""
    windows = dose_windows(config.variants)
    if not windows:
        return []
    return [
        {
            "id": f"{config.primary_metric}:dose_slope",
            "metric": config.primary_metric,
            "model": "per-video log lift over its own control on the achieved alignment change (manipulation "
            "check, the arm's own window), WLS clustered by video",
            "expected": "positive slope",
            "arms": sorted(windows),
        }
    ]


#: ICC of clicks within a video when neither the config nor the platform's data give one: the
#: demo's measured CTR design effect (~12 at 28,000 impressions per video and arm) implies
#: (12 - 1) / 28,000 = 4e-4.
DEFAULT_ICC = 4e-4


def platform_icc(con: Any) -> tuple[float, str] | None:
    """ICC of a click within a video from the platform's own observational data (scene CTRs):
    between-video variance of the video CTR over p(1 - p). None without enough videos."""
    if not table_exists(con, "scenes"):
        return None
    try:
        ctr = con.execute("SELECT avg(ctr_mean) FROM scenes WHERE ctr_mean IS NOT NULL GROUP BY video_id").fetchall()
    except duckdb.Error:  # a scenes table without ctr_mean: no estimate
        return None
    values = np.array([r[0] for r in ctr], dtype=float)
    if len(values) < 3 or not 0 < values.mean() < 1:
        return None
    icc = float(np.var(values, ddof=1) / (values.mean() * (1 - values.mean())))
    return icc, f"between-video variance of {len(values)} videos' observational CTR (scenes.ctr_mean)"


def _expected_icc(config: ExperimentConfig, observed: tuple[float, str] | None) -> tuple[float, str]:
    """The ICC the plan's MDE uses and where it came from (config, platform data, or the default)."""
    if config.expected_icc > 0:
        return config.expected_icc, "the experiment config (expected_icc)"
    if observed is not None:
        return observed
    return DEFAULT_ICC, "default: the demo's measured design effect (no config value, no observational data)"


def _planned_mde(config: ExperimentConfig, observed_icc: tuple[float, str] | None = None) -> dict[str, Any]:
    """The minimum detectable CTR lift at the planned sample size (or why there is none), clustered by video."""
    if not config.planned_impressions_per_arm:
        return {"note": "no planned sample size in the config (planned_impressions_per_arm)"}
    per_video = config.planned_impressions_per_arm / max(config.planned_videos or 1, 1)
    icc, source = _expected_icc(config, observed_icc)
    deff = design_effect(per_video, icc)
    return {
        "metric": "ctr",
        "base_rate": config.expected_base_ctr,
        "impressions_per_arm": config.planned_impressions_per_arm,
        "videos": config.planned_videos,
        "icc": round(icc, 8),
        "icc_source": source,
        "design_effect": round(deff, 6),
        "alpha": config.alpha,
        "power": config.power,
        "mde_relative": round(
            mde_relative(
                config.expected_base_ctr, config.planned_impressions_per_arm, deff, config.alpha, config.power
            ),
            6,
        ),
        "method": "two-sample proportions (Cohen's h) at the effective sample size impressions / design effect",
    }


def analysis_plan(config: ExperimentConfig, observed_icc: tuple[float, str] | None = None) -> dict[str, Any]:
    """The plan as a JSON-able dict (deterministic: the same config and data give the same hash).

    ``observed_icc``: (icc, source) from :func:`platform_icc`, used when the config gives none."""
    hypotheses = {
        "confirmatory": _confirmatory_hypotheses(config),
        "timing": _timing_hypotheses(config),
        "dose_response": _dose_hypotheses(config),
    }
    return {
        "plan_version": PLAN_VERSION,
        "experiment_id": config.experiment_id,
        "name": config.name,
        "arms": [{**s.to_dict(), "planned_share": config.planned_shares[s.name]} for s in config.variants],
        "control": config.control,
        "design": config.design,
        "unit_of_analysis": "video (cluster); impressions are correlated within a video",
        "primary_metric": config.primary_metric,
        "secondary_metrics": list(config.secondary_metrics),
        "alpha": config.alpha,
        "hypotheses": hypotheses,
        "corrections": CORRECTIONS,
        "mde": _planned_mde(config, observed_icc),
        "planned_videos": config.planned_videos,
        "planned_impressions_per_arm": config.planned_impressions_per_arm,
        "planned_days": config.planned_days,
        "start_date": config.start_date.isoformat() if config.start_date else None,
        "stopping_rule": config.stopping_rule,
        "guardrails": "sample-ratio mismatch chi-square at p < 0.001 invalidates the lifts",
    }


def _results_exist(con: Any, experiment_id: str) -> bool:
    return table_exists(con, "ab_results") and bool(
        con.execute("SELECT count(*) FROM ab_results WHERE experiment_id = ?", [experiment_id]).fetchone()[0]
    )


def register_plan(
    config: ExperimentConfig,
    database: str | os.PathLike[str],
    plans_dir: str | os.PathLike[str],
    allow_after_results: bool = False,
) -> RegisteredPlan:
    """Register the experiment's arms and store its hashed plan (file + ``analysis_plans`` row).

    Re-registering the same plan is a no-op (same hash). A plan filed once results exist is
    refused unless ``allow_after_results``; it then says so, and the report lists it as a deviation.
    """
    database = Path(database)
    late, stored, observed = False, {}, None
    if database.exists():
        with read_connection(database) as con:
            late = _results_exist(con, config.experiment_id)
            stored = latest_plans(con)
            observed = platform_icc(con)
    plan = analysis_plan(config, observed)
    digest = plan_hash(plan)
    if stored.get(config.experiment_id, ("",))[0] == digest:  # the same plan again: nothing changes
        sha, plan, path = stored[config.experiment_id]
        return RegisteredPlan(config.experiment_id, sha, Path(path), plan, bool(plan.get("registered_after_results")))
    if late and not allow_after_results:
        raise ValueError(
            f"experiment {config.experiment_id!r} already has results in {database}: a pre-registered "
            "plan must come before them (allow_after_results=True files it as a deviation)"
        )
    if late:
        plan["registered_after_results"] = True
        digest = plan_hash(plan)
    path = Path(plans_dir) / f"{config.experiment_id}.{digest[:12]}.json"
    if not path.exists():
        atomic_write_text(path, json.dumps(plan, indent=2, sort_keys=True, default=str) + "\n")
    register_experiment_config(database, config)
    with write_connection(database) as con:
        con.execute(PLANS_DDL)
        con.execute(
            "INSERT INTO analysis_plans VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [
                config.experiment_id,
                digest,
                _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None),
                late,
                canonical_json(plan),
                str(path),
            ],
        )
        save_experiment_file(con, config.experiment_id)
    return RegisteredPlan(config.experiment_id, digest, path, plan, late)


def verify_plan_file(path: str | os.PathLike[str], sha256: str) -> bool:
    """Whether the plan file still hashes to ``sha256`` (a reviewer's check)."""
    return plan_hash(json.loads(Path(path).read_text())) == sha256


def latest_plans(con: Any) -> dict[str, tuple[str, dict[str, Any], str]]:
    """Each experiment's most recent plan: ``{experiment_id: (sha256, plan, path)}``."""
    if not table_exists(con, "analysis_plans"):
        return {}
    rows = con.execute(
        "SELECT experiment_id, sha256, plan_json, path FROM analysis_plans ORDER BY experiment_id, registered_at"
    ).fetchall()
    return {str(exp): (sha, json.loads(text), path) for exp, sha, text, path in rows}


def plan_deviations(
    plan: dict[str, Any], cells: pd.DataFrame, dates: tuple[Any, Any] | None, alpha: float, excluded: Sequence[str] = ()
) -> list[str]:
    """Every way the executed analysis of one experiment departs from its plan (empty: none)."""
    out: list[str] = []
    # the report's estimators label the control arm BASELINE whatever the registry names it
    planned = [BASELINE if a["name"] == plan["control"] else a["name"] for a in plan["arms"]]
    ran = sorted(set(cells["variant"])) if not cells.empty else []
    for arm in planned:
        if arm not in ran:
            out.append(f"planned arm {arm!r} has no results")
    for arm in ran:
        if arm not in planned:
            out.append(f"arm {arm!r} has results but was not in the plan")
    if plan.get("registered_after_results"):
        out.append("the plan was registered after results had arrived")
    if abs(float(plan["alpha"]) - alpha) > 1e-12:
        out.append(f"analysed at alpha={alpha}, planned alpha={plan['alpha']}")
    n_videos = int(cells["video_id"].nunique()) if not cells.empty else 0
    if plan.get("planned_videos") and n_videos < int(plan["planned_videos"]):
        out.append(f"{n_videos} videos analysed, {plan['planned_videos']} planned")
    target = plan.get("planned_impressions_per_arm")
    if target and not cells.empty:
        per_arm = cells.groupby("variant")["impressions"].sum()
        short = per_arm[per_arm < 0.95 * float(target)]
        for arm, n in short.items():
            out.append(
                f"arm {arm!r}: {int(n)} impressions, {float(target):.0f} planned (the MDE is larger than planned)"
            )
    if plan.get("planned_days") and dates and dates[0] is not None and dates[1] is not None:
        days = (pd.Timestamp(dates[1]) - pd.Timestamp(dates[0])).days + 1
        if days < int(plan["planned_days"]):
            out.append(
                f"ran {days} day(s), {plan['planned_days']} planned: stopped early (stopping rule: "
                f"{plan['stopping_rule']})"
            )
    for item in excluded:
        out.append(f"eligibility: {item}")
    return out


def eligibility_deviations(cells: pd.DataFrame, excluded: pd.DataFrame | None) -> list[str]:
    """Arms left out of some of this experiment's videos because they failed their checks, one line per arm."""
    if excluded is None or excluded.empty or cells.empty:
        return []
    mine = excluded[excluded["video_id"].astype(str).isin(set(cells["video_id"].astype(str)))]
    out = []
    for arm, part in mine.groupby("variant", sort=True):
        reasons = part["exclusion_reason"].fillna("no reason recorded").astype(str)
        top = reasons.str.split(":").str[0].value_counts()
        why = ", ".join(f"{r} ({n})" for r, n in top.items())
        out.append(
            f"arm {arm!r} not analysed in {part['video_id'].nunique()} video(s): ineligible ({why}); "
            f"{part['action'].iat[0] if 'action' in part else 'left out'}"
        )
    return out


def deviations_table(
    database: str | os.PathLike[str],
    cells_by_exp: dict[str, pd.DataFrame],
    alpha: float,
    excluded: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per experiment x deviation (or a 'none' row), with the plan's hash; empty if no plans.

    ``excluded``: the report's excluded-variants table; each arm left out of some videos by
    eligibility is listed as a deviation.
    """
    with read_connection(database) as con:
        plans = latest_plans(con)
        dates = {}
        if plans and table_exists(con, "experiments"):
            dates = {
                str(e): (s, t)
                for e, s, t in con.execute("SELECT experiment_id, start_date, end_date FROM experiments").fetchall()
            }
    rows = []
    for exp in sorted(set(plans) | set(cells_by_exp)):
        if exp not in plans:
            rows.append(
                {
                    "experiment_id": exp,
                    "plan_sha256": None,
                    "plan_file": None,
                    "deviation": "no pre-registered plan: every estimate is exploratory",
                }
            )
            continue
        sha, plan, path = plans[exp]
        cells = cells_by_exp.get(exp, pd.DataFrame(columns=["variant", "video_id", "impressions"]))
        found = plan_deviations(plan, cells, dates.get(exp), alpha, eligibility_deviations(cells, excluded))
        for text in found or ["none: the analysis followed the plan"]:
            rows.append({"experiment_id": exp, "plan_sha256": sha, "plan_file": path, "deviation": text})
    return pd.DataFrame(rows, columns=["experiment_id", "plan_sha256", "plan_file", "deviation"])
