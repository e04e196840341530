"""The human manipulation check, a sample-size planner and the scorer card, from a pretest.

Unit of analysis: one trial (a participant watching one video in one variant). Its outcome is the
participant's mean human alignment a_t over the frames of a window (early / middle / late thirds
by frame centre time, as the model's manipulation check windows them, and ``all``) on which the
participant's cursor was inside the video.

For each variant other than the baseline and each window, the change vs baseline is the
coefficient of the variant in a least-squares fit of trial outcomes on [variant indicator] with
video fixed effects (within-video demeaning), over the baseline's and the variant's trials.
Trials of one participant are correlated (the same person, several videos), and so are trials
of one video (its content); the covariance is the two-way cluster sum
(Cameron, Gelbach & Miller 2011) ``V = V_participant + V_video - V_trial`` with each term CR2
(Bell-McCaffrey, :mod:`analysis.small_sample`), falling back to the larger one-way term when the
sum is not positive; the CI uses a t reference with the smaller of the two Satterthwaite dfs.

Verdict per (variant, window), with the thresholds in :class:`HumanCheckThresholds`:

- ``not enough data``: fewer than ``min_participants`` participants in the variant or in the
  baseline within the window, or fewer than ``min_videos`` videos with both;
- ``passed``: the CI excludes 0 on the planned side (a boost's window: increase; a reduction's:
  decrease; where the plan expects no change, either side: humans' attention did change);
- ``not passed``: otherwise.

``as_planned`` reads it against the plan: a planned change passed, or no planned change and not
passed (a placebo humans did not see as moving attention). A variant's human check
(:func:`human_variant_verdicts`) is its own window's ``as_planned`` (every window for a variant
that plans no change); eligibility may require it (``require_human_check`` in the experiment
config's ``extra``; off by default).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from align_core.experiments.config import variants_for
from align_core.io.warehouse import table_exists
from align_core.stimuli.plans import TIME_WINDOWS, VariantSpec
from analysis.small_sample import METHOD_CR2, cluster_wls

__all__ = [
    "CHECK_WINDOWS",
    "HumanCheckThresholds",
    "PLANNED_CHANGE",
    "PRETEST_RESULT_TABLES",
    "REPORT_TABLES",
    "REQUIRE_HUMAN_CHECK",
    "TWO_WAY_METHOD",
    "attentive_trials",
    "expected_direction",
    "human_manipulation_check",
    "human_variant_verdicts",
    "participants_needed",
    "pretest_report_frames",
    "pretest_check_tables",
    "realism_table",
    "require_human_check",
    "sample_size_plan",
    "stored_human_verdicts",
    "trial_window_means",
    "two_way_contrast",
]

CHECK_WINDOWS: tuple[str, ...] = (*TIME_WINDOWS, "all")
TWO_WAY_METHOD = f"two-way cluster (participant, video), each {METHOD_CR2}; df = min of the two"


@dataclass(frozen=True)
class HumanCheckThresholds:
    """When a cell has enough data, and the CI level."""

    min_participants: int = 10  # per arm (variant and baseline) within the window
    min_videos: int = 2  # videos with trials in both arms
    alpha: float = 0.05
    exclude_failed_attention_checks: bool = True  # drop sessions that missed any attention check


def trial_window_means(trials: pd.DataFrame) -> pd.DataFrame:
    """Per (session, video, variant, window incl. ``all``): the mean of the participant's a_t."""
    columns = ["session_id", "video_id", "variant", "window", "alignment", "frames"]
    if trials.empty:
        return pd.DataFrame(columns=columns)
    keys = ["session_id", "video_id", "variant"]
    whole = trials.assign(window="all")
    frame = pd.concat([trials, whole], ignore_index=True)
    grouped = frame.groupby([*keys, "window"], sort=True)["alignment"]
    out = grouped.agg(alignment="mean", frames="count").reset_index()
    return out[columns]


def expected_direction(spec: VariantSpec, window: str) -> int:
    """+1 / -1 where the plan raises / lowers alignment in ``window`` (``all``: its own window's sign), else 0."""
    if not spec.changes_control:
        return 0
    sign = 1 if spec.kind == "boost" else -1
    if window == "all" or spec.window == "full" or spec.window == window:
        return sign
    return 0


def _within(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Values minus their group mean (video fixed effects by the Frisch-Waugh-Lovell theorem)."""
    series = pd.Series(values)
    return (series - series.groupby(groups).transform("mean")).to_numpy(dtype=float)


def two_way_contrast(
    treated: np.ndarray, y: np.ndarray, participant: np.ndarray, video: np.ndarray, alpha: float = 0.05
) -> dict[str, float]:
    """Effect of ``treated`` on ``y`` with video fixed effects; two-way clustered CR2 CI."""
    x = _within(np.asarray(treated, dtype=float), np.asarray(video))[:, None]
    yw = _within(np.asarray(y, dtype=float), np.asarray(video))
    by_participant = cluster_wls(x, yw, np.asarray(participant))
    by_video = cluster_wls(x, yw, np.asarray(video))
    by_trial = cluster_wls(x, yw, np.arange(len(yw)))
    c = np.array([1.0])
    variance = float(c @ (by_participant.vcov_cr2 + by_video.vcov_cr2 - by_trial.vcov_cr2) @ c)
    if not variance > 0:
        variance = max(float(c @ by_participant.vcov_cr2 @ c), float(c @ by_video.vcov_cr2 @ c))
    df = min(by_participant.satterthwaite_df(c), by_video.satterthwaite_df(c))
    estimate, se = float(by_participant.beta[0]), math.sqrt(max(variance, 0.0))
    out = {"estimate": estimate, "se": se, "df": df, "p_value": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    if se > 0 and math.isfinite(df) and df > 0:
        crit = float(stats.t.ppf(1 - alpha / 2, df))
        out.update(
            p_value=float(2 * stats.t.sf(abs(estimate / se), df)),
            ci_low=estimate - crit * se,
            ci_high=estimate + crit * se,
        )
    return out


def _verdict(row: Mapping[str, float], expected: int, enough: bool) -> str:
    if not enough or not math.isfinite(row["ci_low"]):
        return "not enough data"
    if expected > 0:
        return "passed" if row["ci_low"] > 0 else "not passed"
    if expected < 0:
        return "passed" if row["ci_high"] < 0 else "not passed"
    return "passed" if row["ci_low"] > 0 or row["ci_high"] < 0 else "not passed"


def _check_row(
    cell: pd.DataFrame, spec: VariantSpec, window: str, thresholds: HumanCheckThresholds
) -> dict[str, object]:
    treated = (cell["variant"] == spec.name).to_numpy()
    participants = (cell.loc[treated, "session_id"].nunique(), cell.loc[~treated, "session_id"].nunique())
    both = set(cell.loc[treated, "video_id"]) & set(cell.loc[~treated, "video_id"])
    enough = min(participants) >= thresholds.min_participants and len(both) >= thresholds.min_videos
    nan = {"estimate": math.nan, "se": math.nan, "df": math.nan, "p_value": math.nan}
    result = nan | {"ci_low": math.nan, "ci_high": math.nan}
    if enough:
        kept = cell[cell["video_id"].isin(both)]
        result = two_way_contrast(
            (kept["variant"] == spec.name).to_numpy(),
            kept["alignment"].to_numpy(),
            kept["session_id"].to_numpy(),
            kept["video_id"].to_numpy(),
            thresholds.alpha,
        )
    expected = expected_direction(spec, window)
    verdict = _verdict(result, expected, enough)
    return {
        "variant": spec.name,
        "kind": spec.kind,
        "window": window,
        "expected": {1: "increase", -1: "decrease", 0: "none"}[expected],
        "baseline_mean": float(cell.loc[~treated, "alignment"].mean()) if (~treated).any() else math.nan,
        "variant_mean": float(cell.loc[treated, "alignment"].mean()) if treated.any() else math.nan,
        **result,
        "participants": int(cell["session_id"].nunique()),
        "participants_variant": int(participants[0]),
        "participants_baseline": int(participants[1]),
        "videos": len(both),
        "trials": len(cell),
        "verdict": verdict,
        "as_planned": verdict != "not enough data" and ((verdict == "passed") == (expected != 0)),
        "method": TWO_WAY_METHOD,
    }


def human_manipulation_check(
    window_means: pd.DataFrame,
    specs: Sequence[VariantSpec],
    baseline: str,
    thresholds: HumanCheckThresholds = HumanCheckThresholds(),
) -> pd.DataFrame:
    """One row per (variant, window): change in human alignment vs ``baseline``, its CI and verdict."""
    rows = []
    for spec in specs:
        if spec.name == baseline:
            continue
        for window in CHECK_WINDOWS:
            cell = window_means[
                (window_means["window"] == window) & window_means["variant"].isin([baseline, spec.name])
            ]
            rows.append(_check_row(cell, spec, window, thresholds))
    return pd.DataFrame(rows)


def human_variant_verdicts(check: pd.DataFrame, specs: Sequence[VariantSpec]) -> pd.DataFrame:
    """Per variant: its human check (``passed`` = as planned), from its own window (all windows if it plans none)."""
    rows = []
    for spec in specs:
        part = check[check["variant"] == spec.name]
        if part.empty:
            continue
        own = part[part["expected"] != "none"]
        own = own[own["window"] != "all"] if len(own) > 1 else own
        judged = own if len(own) else part
        if (judged["verdict"] == "not enough data").any():
            status = "not enough data"
        else:
            status = "passed" if bool(judged["as_planned"].all()) else "not passed"
        rows.append({"variant": spec.name, "windows": ",".join(judged["window"]), "human_check": status})
    return pd.DataFrame(rows, columns=["variant", "windows", "human_check"])


def participants_needed(
    pilot_se: float, pilot_participants: int, change: float, alpha: float = 0.05, power: float = 0.8, lists: int = 1
) -> int:
    """Participants for ``power`` to detect ``change`` at ``alpha``, scaling the pilot's clustered SE.

    With the same videos and design, the clustered SE shrinks as ``1/sqrt(N)`` in participants:
    ``N = N0 (SE0 (z_{1-alpha/2} + z_power) / change)^2``, rounded up to a whole number of Latin-square lists.
    """
    if not (pilot_se > 0 and pilot_participants > 0 and change != 0):
        raise ValueError(
            f"need a positive pilot SE and participant count and a non-zero change, got {pilot_se}, "
            f"{pilot_participants}, {change}"
        )
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    needed = pilot_participants * (pilot_se * z / abs(change)) ** 2
    lists = max(int(lists), 1)
    return int(math.ceil(max(needed, 2.0) / lists) * lists)


def sample_size_plan(
    check: pd.DataFrame, change: float, alpha: float = 0.05, power: float = 0.8, lists: int = 1
) -> pd.DataFrame:
    """Per checked (variant, window) of a pilot: participants needed to detect ``change`` (total, all arms)."""
    rows = []
    for row in check.to_dict(orient="records"):
        pilot = int(row["participants"])
        se = float(row["se"])
        needed = participants_needed(se, pilot, change, alpha, power, lists) if se > 0 and pilot else None
        rows.append(
            {
                "variant": row["variant"],
                "window": row["window"],
                "pilot_participants": pilot,
                "pilot_se": se,
                "change": change,
                "power": power,
                "participants_needed": needed,
            }
        )
    return pd.DataFrame(rows)


def realism_table(realism: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Per variant (2AFC answers): detection rate, Wilson CI, and the binomial test against 50 %."""
    rows = []
    answered = realism[(realism["mode"] == "2afc") & realism["correct"].notna()] if len(realism) else realism
    for variant, part in answered.groupby("variant", sort=True) if len(answered) else []:
        n, k = len(part), int(part["correct"].astype(bool).sum())
        z = stats.norm.ppf(1 - alpha / 2)
        centre = (k + z * z / 2) / (n + z * z)
        half = z * math.sqrt(k * (n - k) / n + z * z / 4) / (n + z * z)
        rows.append(
            {
                "variant": variant,
                "answers": n,
                "participants": int(part["session_id"].nunique()),
                "detection_rate": k / n,
                "ci_low": centre - half,
                "ci_high": centre + half,
                "p_vs_chance": float(stats.binomtest(k, n, 0.5).pvalue),
            }
        )
    return pd.DataFrame(
        rows, columns=["variant", "answers", "participants", "detection_rate", "ci_low", "ci_high", "p_vs_chance"]
    )


PRETEST_RESULT_TABLES: tuple[str, ...] = (
    "pretest_human_check",
    "pretest_human_verdicts",
    "pretest_sample_size",
    "pretest_scorer_card",
    "pretest_realism_summary",
)
#: The change in human alignment the planner sizes a study for (5 percentage points of attention share).
PLANNED_CHANGE = 0.05


def _study_specs(database: str | os.PathLike[str], study: Mapping[str, Any]) -> tuple[list[VariantSpec], str]:
    shown = {v["variant"] for video in study["videos"] for v in video["variants"]}
    specs = [s for s in variants_for(database, str(study["experiment_id"])) if s.name in shown]
    controls = [s.name for s in specs if s.role == "control"]
    if not controls:
        raise ValueError(f"pretest {study['study_id']}: no control variant among the variants shown {sorted(shown)}")
    return specs, controls[0]


def attentive_trials(trials: pd.DataFrame, sessions: pd.DataFrame | None) -> pd.DataFrame:
    """``trials`` of the sessions collected now (``pretest_sessions``: a withdrawn one is gone even
    before its video's maps are rebuilt) that passed every attention check."""
    if sessions is None or not len(trials):
        return trials
    passed = sessions[sessions["attention_checks_passed"] >= sessions["attention_checks_shown"]]
    keys = pd.MultiIndex.from_frame(trials[["study_id", "session_id"]])
    return trials[keys.isin(pd.MultiIndex.from_frame(passed[["study_id", "session_id"]]))]


def _tagged(frame: pd.DataFrame, study: Mapping[str, Any]) -> pd.DataFrame:
    return frame.assign(study_id=str(study["study_id"]), experiment_id=str(study["experiment_id"]))


def pretest_check_tables(
    database: str | os.PathLike[str],
    studies: Mapping[str, Mapping[str, Any]],
    trials: pd.DataFrame,
    cards: pd.DataFrame,
    realism: pd.DataFrame | None,
    thresholds: HumanCheckThresholds = HumanCheckThresholds(),
    sessions: pd.DataFrame | None = None,
) -> dict[str, pd.DataFrame]:
    """Every pretest result table over ``studies`` (``trials`` and ``cards`` from the per-video stage).

    With ``sessions`` (``pretest_sessions``) and ``exclude_failed_attention_checks``, sessions
    that missed an attention check are left out of the check.
    """
    parts: dict[str, list[pd.DataFrame]] = {name: [] for name in PRETEST_RESULT_TABLES}
    if thresholds.exclude_failed_attention_checks:
        trials = attentive_trials(trials, sessions)
    for study_id, study in studies.items():
        specs, baseline = _study_specs(database, study)
        own = trials[trials["study_id"] == study_id] if len(trials) else trials
        if len(own):
            check = human_manipulation_check(trial_window_means(own), specs, baseline, thresholds)
            parts["pretest_human_check"].append(_tagged(check, study))
            parts["pretest_human_verdicts"].append(_tagged(human_variant_verdicts(check, specs), study))
            plan = sample_size_plan(check, PLANNED_CHANGE, thresholds.alpha, lists=len(study["lists"]))
            parts["pretest_sample_size"].append(_tagged(plan, study))
        card = cards[cards["study_id"] == study_id] if len(cards) else cards
        if len(card):
            summary = card.groupby(["scorer", "variant"], as_index=False).agg(
                videos=("video_id", "nunique"), frames=("frames", "sum"), nss=("nss", "mean"), cc=("cc", "mean")
            )
            parts["pretest_scorer_card"].append(_tagged(summary, study))
        answers = realism[realism["study_id"] == study_id] if realism is not None and len(realism) else None
        if answers is not None and len(answers):
            parts["pretest_realism_summary"].append(_tagged(realism_table(answers, thresholds.alpha), study))
    return {
        name: pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"study_id": pd.Series(dtype="string")})
        for name, frames in parts.items()
    }


#: The experiment config key (in its ``extra``) that makes eligibility require the human check.
REQUIRE_HUMAN_CHECK = "require_human_check"


def stored_human_verdicts(con: Any) -> pd.DataFrame | None:
    """``pretest_human_verdicts`` (experiment_id, study_id, variant, human_check), or None before any pretest."""
    if not table_exists(con, "pretest_human_verdicts"):
        return None
    frame = con.execute("SELECT * FROM pretest_human_verdicts").df()
    return frame if {"experiment_id", "variant", "human_check"} <= set(frame.columns) else None


def require_human_check(
    eligibility: pd.DataFrame | None, configs: Mapping[str, Any], verdicts: pd.DataFrame | None
) -> pd.DataFrame | None:
    """``eligibility`` with each treatment/placebo arm of an experiment whose config sets
    ``require_human_check: true`` (in ``extra``) made ineligible unless its human check passed.

    The control is never judged (it is what the check compares with). Without the setting
    (the default) eligibility is returned unchanged.
    """
    if eligibility is None or eligibility.empty:
        return eligibility
    out = eligibility.copy()
    for experiment_id, config in configs.items():
        if not bool(dict(getattr(config, "extra", {}) or {}).get(REQUIRE_HUMAN_CHECK, False)):
            continue
        own = verdicts[verdicts["experiment_id"] == experiment_id] if verdicts is not None else pd.DataFrame()
        status = dict(zip(own.get("variant", []), own.get("human_check", []), strict=False))
        for spec in config.variants:
            if spec.role == "control" or status.get(spec.name) == "passed":
                continue
            why = f"human check {status.get(spec.name, 'not run')} (experiment {experiment_id} pretest)"
            rows = out["variant"] == spec.name
            reason = out.loc[rows, "exclusion_reason"]
            out.loc[rows, "exclusion_reason"] = [f"{r}; {why}" if isinstance(r, str) and r else why for r in reason]
            out.loc[rows, "eligible"] = False
    return out


#: The report's "Pretest" section: each table's title and how it was computed.
REPORT_TABLES: dict[str, tuple[str, str]] = {
    "pretest_human_verdicts": (
        "Human manipulation check per variant",
        "passed = as planned in the variant's own window (boost/reduction: the change is detected with its sign; "
        "no planned change: none detected)",
    ),
    "pretest_human_check": (
        "Human manipulation check per variant and window",
        "change in participants' mean human alignment vs baseline, video fixed effects; " + TWO_WAY_METHOD,
    ),
    "pretest_sample_size": (
        "Participants needed (80 % power)",
        f"to detect a change of {PLANNED_CHANGE} in human alignment, scaling the pilot's clustered SE",
    ),
    "pretest_scorer_card": ("Scorer card on the lab's own ads", "NSS and CC of each scorer's maps vs the human maps"),
    "pretest_realism_summary": ("Realism (which one was edited?)", "2AFC detection rate, Wilson CI, binomial vs 50 %"),
}


def pretest_report_frames(con: Any) -> dict[str, pd.DataFrame]:
    """The pretest tables the warehouse holds (none: the report leaves the section out)."""
    frames = {}
    for name in REPORT_TABLES:
        if table_exists(con, name):
            frame = con.execute(f"SELECT * FROM {name}").df()
            if len(frame):
                frames[name] = frame.drop(columns=[c for c in ("method",) if c in frame.columns])
    return frames
