"""DuckDB queries that reduce results to sufficient statistics before pandas sees them.

Every analysis works on sums per experiment x video x variant (the cluster is the video), so
ten million impressions become a few thousand rows inside DuckDB; nothing here loads export
rows, let alone impressions, into Python.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from align_core.io.warehouse import table_exists

__all__ = [
    "achieved_deltas",
]

UNKNOWN_INDUSTRY = "unknown"


def _columns(con: Any, table: str) -> set[str]:
    return {
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]
        ).fetchall()
    }


def _industry_source(con: Any) -> str:
    """A ``(video_id, industry)`` subquery: the video catalog first, scene metadata second."""
    parts = []
    if table_exists(con, "videos") and {"video_id", "industry"} <= _columns(con, "videos"):
        parts.append(
            "SELECT CAST(video_id AS VARCHAR) AS video_id, industry, 1 AS pri FROM videos WHERE industry IS NOT NULL AND industry <> ''"
        )
    if table_exists(con, "scenes") and {"video_id", "industry"} <= _columns(con, "scenes"):
        parts.append(
            "SELECT CAST(video_id AS VARCHAR) AS video_id, industry, 2 AS pri FROM scenes WHERE industry IS NOT NULL AND industry <> ''"
        )
    if not parts:
        return "SELECT NULL::VARCHAR AS video_id, NULL::VARCHAR AS industry WHERE FALSE"
    union = " UNION ALL ".join(parts)
    return f"SELECT video_id, arg_min(industry, pri) AS industry FROM ({union}) GROUP BY video_id"


def cell_totals(con: Any, experiment_id: str | None = None) -> pd.DataFrame:
    """Sums per experiment x video x variant with the video's industry ('unknown' if none).

    Returns columns experiment_id, video_id, variant, industry, impressions, clicks,
    conversions, spend, watch_time_s_sum, watch_time_s_sumsq (one row per cell).
    """
    if not table_exists(con, "ab_results"):
        return pd.DataFrame(
            columns=[
                "experiment_id",
                "video_id",
                "variant",
                "industry",
                "impressions",
                "clicks",
                "conversions",
                "spend",
                "watch_time_s_sum",
                "watch_time_s_sumsq",
            ]
        )
    where = "WHERE r.experiment_id = ?" if experiment_id else ""
    params = [experiment_id] if experiment_id else []
    sql = f"""
        SELECT r.experiment_id, r.video_id, r.variant,
               COALESCE(any_value(i.industry), '{UNKNOWN_INDUSTRY}') AS industry,
               CAST(sum(r.impressions) AS BIGINT) AS impressions,
               CAST(sum(r.clicks) AS BIGINT) AS clicks,
               CAST(sum(r.conversions) AS BIGINT) AS conversions,
               sum(r.spend) AS spend,
               sum(r.watch_time_s_sum) AS watch_time_s_sum,
               sum(r.watch_time_s_sumsq) AS watch_time_s_sumsq
        FROM ab_results r LEFT JOIN ({_industry_source(con)}) i ON i.video_id = r.video_id
        {where}
        GROUP BY r.experiment_id, r.video_id, r.variant
        ORDER BY r.experiment_id, r.video_id, r.variant
    """
    frame = con.execute(sql, params).df()
    frame["video_id"] = frame["video_id"].astype(str)
    return frame


def arm_totals(con: Any) -> pd.DataFrame:
    """Served impressions per experiment x video x variant with the planned share when recorded."""
    if not table_exists(con, "ab_results"):
        return pd.DataFrame(columns=["experiment_id", "video_id", "variant", "impressions", "planned_share"])
    join = ""
    share = "NULL::DOUBLE AS planned_share"
    if table_exists(con, "experiment_arms"):
        join = "LEFT JOIN experiment_arms a USING (experiment_id, variant)"
        share = "any_value(a.planned_share) AS planned_share"
    frame = con.execute(f"""
        SELECT experiment_id, CAST(video_id AS VARCHAR) AS video_id, variant,
               CAST(sum(impressions) AS BIGINT) AS impressions, {share}
        FROM ab_results r {join}
        GROUP BY experiment_id, video_id, variant ORDER BY experiment_id, video_id, variant
    """).df()
    return frame


def achieved_deltas(con: Any) -> pd.DataFrame | None:
    """``manipulation_check`` rows (video_id, variant, window, achieved_delta), or None if absent."""
    if not table_exists(con, "manipulation_check"):
        return None
    cols = _columns(con, "manipulation_check")
    if not {"video_id", "variant", "achieved_delta"} <= cols:
        return None
    window = '"window"' if "window" in cols else 'NULL::VARCHAR AS "window"'
    frame = con.execute(f"""
        SELECT CAST(video_id AS VARCHAR) AS video_id, variant, {window}, achieved_delta
        FROM manipulation_check WHERE achieved_delta IS NOT NULL
    """).df()
    frame["video_id"] = frame["video_id"].astype(str)
    return frame


def scene_rows(con: Any) -> pd.DataFrame | None:
    """Scene-level metadata for the observational model, or None if the table is absent."""
    if not table_exists(con, "scenes"):
        return None
    cols = _columns(con, "scenes")
    need = {"video_id", "attention_proportion", "ctr_mean", "cvr_mean", "contrast", "brightness"}
    if not need <= cols:
        return None
    industry = "COALESCE(CAST(industry AS VARCHAR), 'unknown')" if "industry" in cols else f"'{UNKNOWN_INDUSTRY}'"
    frame = con.execute(f"""
        SELECT CAST(video_id AS VARCHAR) AS video_id, attention_proportion, ctr_mean, cvr_mean,
               contrast, brightness, {industry} AS industry
        FROM scenes
    """).df()
    frame["video_id"] = frame["video_id"].astype(str)
    return frame


def variant_eligibility(con: Any) -> pd.DataFrame | None:
    """``variants`` rows (video_id, variant, eligible, exclusion_reason), or None without those columns.

    A variant is eligible only when its checks passed (``align_core.experiments.eligibility``); the analysis
    keeps ineligible variants out unless told otherwise.
    """
    if not table_exists(con, "variants"):
        return None
    if not {"video_id", "variant", "eligible", "exclusion_reason"} <= _columns(con, "variants"):
        return None
    frame = con.execute("""
        SELECT CAST(video_id AS VARCHAR) AS video_id, variant, coalesce(eligible, false) AS eligible, exclusion_reason
        FROM variants
    """).df()
    frame["video_id"] = frame["video_id"].astype(str)
    return frame
