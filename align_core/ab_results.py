"""A/B results: the export schema, per-row validation, transactional upsert, and a simulator.

Ad platforms export results at the grain ``experiment x video x variant x day x segment``;
that grain (not impressions) is what lands in DuckDB, so the analysis aggregates sufficient
statistics (sums, sums of squares) without ever seeing an impression row.

An export dropped into an inbox folder is validated whole. Every bad row is listed with its
file, row number and reason; a bad file is moved to ``rejected/`` beside the inbox with a
``.errors.txt`` and the warehouse is not touched. A good file is upserted on the natural key in
one transaction under the warehouse writer lock, and only after the commit is it moved to
``done/``; re-ingesting the same file therefore changes nothing.

No Dagster import here: the sensor and asset that wrap these functions live in ``align_assets``.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from align_core.atomic import atomic_path, atomic_write_text
from align_core.ids import VIDEO_ID_PATTERN, InvalidVideoIdError, validate_video_id
from align_core.video_io import file_sha256
from align_core.warehouse import read_connection, table_exists, transaction, write_connection

VARIANTS: tuple[str, ...] = (
    "baseline",
    "early_boost",
    "middle_boost",
    "late_boost",
    "full_boost",
    "reduction",
    "placebo",
)

KEY_COLUMNS: tuple[str, ...] = ("experiment_id", "video_id", "variant", "date", "segment")
COUNT_COLUMNS: tuple[str, ...] = ("impressions", "clicks", "conversions")
AMOUNT_COLUMNS: tuple[str, ...] = ("spend", "watch_time_s_sum", "watch_time_s_sumsq")
REQUIRED_COLUMNS: tuple[str, ...] = KEY_COLUMNS + COUNT_COLUMNS + AMOUNT_COLUMNS
# Optional: the planned share of traffic per arm (constant per experiment x variant), and a
# human-readable experiment name. Both feed the ``experiments``/``experiment_arms`` tables.
OPTIONAL_COLUMNS: tuple[str, ...] = ("planned_share", "experiment_name")
EXPORT_SUFFIXES: tuple[str, ...] = (".csv", ".parquet")

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_FLOATY_ID = re.compile(r"^[+-]?\d+\.\d*$")
_SCIENTIFIC_ID = re.compile(r"^[+-]?\d+(\.\d*)?[eE][+-]?\d+$")  # as align_core.ids rejects
_MAX_ERRORS_LISTED = 1000

AB_RESULTS_DDL = """
CREATE TABLE IF NOT EXISTS ab_results (
    experiment_id VARCHAR NOT NULL,
    video_id VARCHAR NOT NULL,
    variant VARCHAR NOT NULL,
    date DATE NOT NULL,
    segment VARCHAR NOT NULL,
    impressions BIGINT NOT NULL,
    clicks BIGINT NOT NULL,
    conversions BIGINT NOT NULL,
    spend DOUBLE NOT NULL,
    watch_time_s_sum DOUBLE NOT NULL,
    watch_time_s_sumsq DOUBLE NOT NULL,
    source_file VARCHAR NOT NULL,
    PRIMARY KEY (experiment_id, video_id, variant, date, segment)
)
"""
EXPERIMENTS_DDL = """
CREATE TABLE IF NOT EXISTS experiments (
    experiment_id VARCHAR PRIMARY KEY,
    name VARCHAR,
    start_date DATE,
    end_date DATE
)
"""
ARMS_DDL = """
CREATE TABLE IF NOT EXISTS experiment_arms (
    experiment_id VARCHAR NOT NULL,
    variant VARCHAR NOT NULL,
    planned_share DOUBLE NOT NULL,
    PRIMARY KEY (experiment_id, variant)
)
"""


class ExportValidationError(ValueError):
    """An export that cannot be ingested; ``errors`` lists every bad row."""

    def __init__(self, path: Path, errors: list[str]) -> None:
        self.path = path
        self.errors = errors
        shown = "\n".join(errors[:20])
        more = f"\n... and {len(errors) - 20} more" if len(errors) > 20 else ""
        super().__init__(f"{path.name}: {len(errors)} error(s)\n{shown}{more}")


@dataclass(frozen=True)
class IngestReport:
    """What one ingestion did, for sensor/asset metadata and for people reading logs."""

    source: Path
    status: str  # "ingested" or "rejected"
    moved_to: Path
    rows: int = 0
    rows_replaced: int = 0
    experiments: tuple[str, ...] = ()
    impressions: int = 0
    sha256: str = ""
    errors: tuple[str, ...] = ()
    errors_file: Path | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ingested"


def ensure_tables(con: Any) -> None:
    """Create the results tables if they do not exist (same DDL for ingestion and tests)."""
    con.execute(AB_RESULTS_DDL)
    con.execute(EXPERIMENTS_DDL)
    con.execute(ARMS_DDL)


# ---------------------------------------------------------------------------------------------
# reading and validation
# ---------------------------------------------------------------------------------------------


def _read_export(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """Read an export as TEXT columns (ids must never pass through a float parser)."""
    errors: list[str] = []
    suffix = path.suffix.lower()
    if suffix == ".csv":
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
        return frame, errors
    if suffix == ".parquet":
        import pyarrow.parquet as pq
        import pyarrow.types as pat

        table = pq.read_table(path)
        for name in ("experiment_id", "video_id"):
            if name in table.column_names and pat.is_floating(table.schema.field(name).type):
                errors.append(
                    f"{path.name}: column {name} is stored as {table.schema.field(name).type} "
                    "in the Parquet file: ids were mangled into floats (19-digit ids lose digits); "
                    "write ids as strings"
                )
        frame = table.to_pandas()
        for column in frame.columns:
            series = frame[column]
            if column in ("date",) and pd.api.types.is_datetime64_any_dtype(series):
                frame[column] = series.dt.strftime("%Y-%m-%d")
            frame[column] = frame[column].map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
            if column == "date":
                frame[column] = frame[column].str.slice(0, 10).where(frame[column].str.len() >= 10, frame[column])
        return frame, errors
    raise ValueError(f"{path}: unsupported export type {suffix!r}; use one of {EXPORT_SUFFIXES}")


def validate_export(
    frame: pd.DataFrame,
    source: str,
    known_videos: set[str] | None = None,
    known_variants: Sequence[str] = VARIANTS,
) -> tuple[pd.DataFrame, list[str]]:
    """Check every row of a text-typed export; return the typed frame and per-row errors.

    Rows are numbered as data rows starting at 1 (the CSV header is line 1, so data row ``r``
    is on line ``r + 1``). Each message names the file, the row, the column and the value.
    """
    errors: list[str] = []
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        return frame, [
            f"{source}: missing required column(s) {', '.join(missing)}; "
            f"an export needs {', '.join(REQUIRED_COLUMNS)}"
        ]
    if len(frame) == 0:
        return frame, [f"{source}: the export has a header but no rows"]

    frame = frame.copy()
    for column in KEY_COLUMNS:
        frame[column] = frame[column].astype(str).str.strip()
    row_no = np.arange(1, len(frame) + 1)
    bad = np.zeros(len(frame), dtype=bool)

    def flag(mask: np.ndarray, message: Any) -> None:
        nonlocal bad
        for idx in np.flatnonzero(mask):
            text = message(idx) if callable(message) else message
            errors.append(f"{source}: row {row_no[idx]} (line {row_no[idx] + 1}): {text}")
        bad |= mask

    # ids: strings, not floats or scientific notation, safe as path parts
    for column in ("experiment_id", "video_id"):
        # vectorised fast path: only ids failing the pattern go through the per-row messages
        suspect = (~frame[column].str.match(VIDEO_ID_PATTERN).to_numpy()
                   | frame[column].str.match(_SCIENTIFIC_ID).to_numpy())
        for idx in np.flatnonzero(suspect):
            value = frame[column].iat[idx]
            one = np.zeros(len(frame), dtype=bool)
            one[idx] = True
            if _FLOATY_ID.match(value):
                flag(one, f"{column} {value!r} looks like a number that went through a float "
                     "parser (ids must be exact digit strings; 19-digit ids overflow float64)")
                continue
            try:
                validate_video_id(value)
            except InvalidVideoIdError as exc:
                flag(one, f"{column}: {exc}")
    if known_videos is not None:
        unknown = ~frame["video_id"].isin(known_videos).to_numpy() & ~bad
        flag(unknown, lambda i: f"unknown video {frame['video_id'].iat[i]!r} (not in the video catalog)")

    variant_ok = frame["variant"].isin(list(known_variants)).to_numpy()
    flag(~variant_ok, lambda i: f"unknown variant {frame['variant'].iat[i]!r}; expected one of {', '.join(known_variants)}")

    dates = pd.to_datetime(frame["date"], format="%Y-%m-%d", errors="coerce")
    date_bad = dates.isna().to_numpy() | ~frame["date"].str.match(_DATE).to_numpy()
    flag(date_bad, lambda i: f"bad date {frame['date'].iat[i]!r}; expected YYYY-MM-DD")
    frame["date"] = dates.dt.date

    seg_bad = (frame["segment"] == "").to_numpy()
    flag(seg_bad, "empty segment (use 'all' when the export has no breakdown)")

    numeric: dict[str, np.ndarray] = {}
    for column in COUNT_COLUMNS + AMOUNT_COLUMNS:
        text = frame[column].astype(str).str.strip()
        values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
        not_number = ~np.isfinite(values)
        flag(not_number, lambda i, c=column, t=text: f"{c} {t.iat[i]!r} is not a finite number")
        negative = np.isfinite(values) & (values < 0)
        flag(negative, lambda i, c=column, v=values: f"negative {c} ({v[i]:g})")
        if column in COUNT_COLUMNS:
            fractional = np.isfinite(values) & (values != np.floor(values))
            flag(fractional, lambda i, c=column, v=values: f"{c} must be a whole count, got {v[i]:g}")
        numeric[column] = values
    imp, clk, conv = numeric["impressions"], numeric["clicks"], numeric["conversions"]
    with np.errstate(invalid="ignore"):
        flag(clk > imp, lambda i: f"clicks ({clk[i]:g}) > impressions ({imp[i]:g})")
        flag(conv > clk, lambda i: f"conversions ({conv[i]:g}) > clicks ({clk[i]:g})")
        wsum, wsq = numeric["watch_time_s_sum"], numeric["watch_time_s_sumsq"]
        # Cauchy-Schwarz: n * sum(x^2) >= (sum x)^2 for any n values; a violation means the
        # columns were swapped or aggregated at a different grain.
        cs_bad = imp * wsq < wsum**2 * (1 - 1e-9) - 1e-6
        flag(cs_bad, lambda i: (f"watch_time_s_sumsq ({wsq[i]:g}) is smaller than watch_time_s_sum^2 / "
                                f"impressions ({wsum[i] ** 2 / max(imp[i], 1):g}); columns swapped or wrong grain"))
        flag((imp == 0) & (wsum > 0), lambda i: "watch time without impressions")

    duplicated = frame.duplicated(list(KEY_COLUMNS), keep=False).to_numpy() & ~date_bad
    flag(duplicated, lambda i: "duplicate natural key (experiment_id, video_id, variant, date, segment) "
         "within the file")

    if "planned_share" in frame.columns:
        share = pd.to_numeric(frame["planned_share"].astype(str).str.strip(), errors="coerce").to_numpy(dtype=float)
        flag(~np.isfinite(share) | (share <= 0) | (share > 1),
             lambda i: f"planned_share {frame['planned_share'].iat[i]!r} must be in (0, 1]")
        frame["planned_share"] = share
        ok = ~bad
        if ok.any():
            arms = frame.loc[ok].groupby(["experiment_id", "variant"])["planned_share"].nunique()
            for (exp, var), count in arms[arms > 1].items():
                errors.append(f"{source}: planned_share differs between rows of experiment {exp!r} variant {var!r}")
            totals = frame.loc[ok].drop_duplicates(["experiment_id", "variant"]).groupby("experiment_id")["planned_share"].sum()
            # a file may restate only some arms, so its shares may sum to less than 1, never more
            for exp, total in totals[totals > 1 + 1e-6].items():
                errors.append(f"{source}: planned shares of experiment {exp!r} sum to {total:.4f} (> 1)")

    for column in COUNT_COLUMNS:
        frame[column] = np.where(np.isfinite(numeric[column]), numeric[column], 0).astype(np.int64)
    for column in AMOUNT_COLUMNS:
        frame[column] = np.where(np.isfinite(numeric[column]), numeric[column], 0.0)
    return frame, errors


# ---------------------------------------------------------------------------------------------
# ingestion
# ---------------------------------------------------------------------------------------------


def scan_inbox(inbox_dir: str | os.PathLike[str]) -> list[Path]:
    """Export files waiting in ``inbox_dir`` (not in done/ or rejected/), oldest name first.

    Hidden files are skipped: writers (and :func:`simulate_ab_export`) write to a hidden
    temporary name and rename it into place, so a half-written export is never picked up.
    """
    inbox = Path(inbox_dir)
    if not inbox.is_dir():
        return []
    return sorted(
        p for p in inbox.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in EXPORT_SUFFIXES
    )


def _move_aside(path: Path, folder: Path, sha: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    if target.exists():
        target = folder / f"{path.stem}.{sha[:12]}{path.suffix}"
        if target.exists():
            target.unlink()
    shutil.move(str(path), str(target))
    return target


def _known_videos_from_warehouse(database: Path) -> set[str] | None:
    if not database.exists():
        return None
    # read_connection retries while another process holds DuckDB's file lock.
    with read_connection(database) as con:
        if not table_exists(con, "videos"):
            return None
        return {str(v) for (v,) in con.execute("SELECT CAST(video_id AS VARCHAR) FROM videos").fetchall()}


def ingest_export(
    path: str | os.PathLike[str],
    database: str | os.PathLike[str],
    known_videos: set[str] | None = None,
    known_variants: Sequence[str] = VARIANTS,
    check_catalog: bool = True,
) -> IngestReport:
    """Validate one export and upsert it into ``ab_results`` (whole file or nothing).

    ``known_videos=None`` with ``check_catalog=True`` checks ids against the warehouse's
    ``videos`` table when it exists. A file with any bad row is moved to ``rejected/`` beside
    the inbox with ``<name>.errors.txt`` listing every bad row, and the warehouse is untouched.
    A good file is upserted on the natural key in one transaction under the writer lock, then
    moved to ``done/``. The rows an export carries replace stored rows with the same key
    (platform exports restate earlier days); other stored rows are untouched.
    """
    path = Path(path)
    database = Path(database)
    inbox = path.parent
    sha = file_sha256(path)
    if known_videos is None and check_catalog:
        known_videos = _known_videos_from_warehouse(database)

    try:
        raw, errors = _read_export(path)
        frame, row_errors = validate_export(raw, path.name, known_videos, known_variants)
        errors = errors + row_errors
    except Exception as exc:  # unreadable file: reject it whole with the reason
        frame, errors = pd.DataFrame(), [f"{path.name}: cannot be read as {path.suffix} ({type(exc).__name__}: {exc})"]

    if errors:
        moved = _move_aside(path, inbox / "rejected", sha)
        listed = errors[:_MAX_ERRORS_LISTED]
        if len(errors) > len(listed):
            listed.append(f"... and {len(errors) - len(listed)} more")
        errors_file = moved.with_name(moved.name + ".errors.txt")
        atomic_write_text(errors_file, "\n".join(listed) + "\n")
        return IngestReport(source=path, status="rejected", moved_to=moved, sha256=sha,
                            errors=tuple(errors), errors_file=errors_file)

    rows = frame[list(REQUIRED_COLUMNS)].copy()
    rows["source_file"] = path.name
    experiments = frame.groupby("experiment_id").agg(start_date=("date", "min"), end_date=("date", "max")).reset_index()
    if "experiment_name" in frame.columns:
        names = frame.groupby("experiment_id")["experiment_name"].first()
        experiments["name"] = experiments["experiment_id"].map(names).replace("", None)
    else:
        experiments["name"] = None
    arms = None
    if "planned_share" in frame.columns:
        arms = frame.drop_duplicates(["experiment_id", "variant"])[["experiment_id", "variant", "planned_share"]]

    with write_connection(database) as con:
        try:
            with transaction(con):
                ensure_tables(con)
                con.register("_incoming_ab", rows)
                replaced = con.execute(
                    "SELECT count(*) FROM ab_results a JOIN _incoming_ab i USING (experiment_id, video_id, variant, date, segment)"
                ).fetchone()[0]
                con.execute(
                    "DELETE FROM ab_results WHERE (experiment_id, video_id, variant, date, segment) IN "
                    "(SELECT (experiment_id, video_id, variant, date, segment) FROM _incoming_ab)"
                )
                columns = ", ".join(list(REQUIRED_COLUMNS) + ["source_file"])
                con.execute(f"INSERT INTO ab_results ({columns}) SELECT {columns} FROM _incoming_ab")
                con.register("_incoming_exp", experiments)
                # widen the experiment's date range; keep a name given earlier unless this file names it
                con.execute(
                    """
                    INSERT INTO experiments (experiment_id, name, start_date, end_date)
                    SELECT experiment_id, name, start_date, end_date FROM _incoming_exp
                    ON CONFLICT (experiment_id) DO UPDATE SET
                        name = COALESCE(excluded.name, experiments.name),
                        start_date = LEAST(experiments.start_date, excluded.start_date),
                        end_date = GREATEST(experiments.end_date, excluded.end_date)
                    """
                )
                if arms is not None:
                    con.register("_incoming_arms", arms)
                    con.execute(
                        "INSERT OR REPLACE INTO experiment_arms SELECT experiment_id, variant, planned_share FROM _incoming_arms"
                    )
        finally:
            for view in ("_incoming_ab", "_incoming_exp", "_incoming_arms"):
                try:
                    con.unregister(view)
                except Exception:
                    pass
    moved = _move_aside(path, inbox / "done", sha)
    return IngestReport(
        source=path,
        status="ingested",
        moved_to=moved,
        rows=len(rows),
        rows_replaced=int(replaced),
        experiments=tuple(sorted(experiments["experiment_id"])),
        impressions=int(rows["impressions"].sum()),
        sha256=sha,
    )


def stored_ab_totals(database: str | os.PathLike[str]) -> tuple[int, int]:
    """(rows, impressions) stored in ``ab_results`` (zeros before the first ingest)."""
    if not Path(database).exists():
        return 0, 0
    with read_connection(database) as con:
        if not table_exists(con, "ab_results"):
            return 0, 0
        rows, impressions = con.execute("SELECT count(*), coalesce(sum(impressions), 0) FROM ab_results").fetchone()
    return int(rows), int(impressions)


def register_experiment(
    database: str | os.PathLike[str],
    experiment_id: str,
    planned_shares: Mapping[str, float],
    name: str | None = None,
    start_date: _dt.date | None = None,
    end_date: _dt.date | None = None,
) -> None:
    """Record an experiment's planned allocation before (or without) exports carrying it.

    The sample-ratio-mismatch guardrail compares served impressions to these shares.
    """
    validate_video_id(experiment_id, where="experiment_id")
    total = sum(planned_shares.values())
    if abs(total - 1) > 1e-6 or any(s <= 0 for s in planned_shares.values()):
        raise ValueError(f"planned shares of {experiment_id!r} must be positive and sum to 1, got {dict(planned_shares)}")
    unknown = sorted(set(planned_shares) - set(VARIANTS))
    if unknown:
        raise ValueError(f"experiment {experiment_id!r}: unknown variant(s) {unknown}")
    with write_connection(database) as con, transaction(con):
        ensure_tables(con)
        con.execute(
            """INSERT INTO experiments VALUES (?, ?, ?, ?) ON CONFLICT (experiment_id) DO UPDATE SET
               name = COALESCE(excluded.name, experiments.name),
               start_date = COALESCE(excluded.start_date, experiments.start_date),
               end_date = COALESCE(excluded.end_date, experiments.end_date)""",
            [experiment_id, name, start_date, end_date],
        )
        con.execute("DELETE FROM experiment_arms WHERE experiment_id = ?", [experiment_id])
        for variant, share in planned_shares.items():
            con.execute("INSERT INTO experiment_arms VALUES (?, ?, ?)", [experiment_id, variant, float(share)])


# ---------------------------------------------------------------------------------------------
# simulator
# ---------------------------------------------------------------------------------------------

DEFAULT_SEGMENTS: tuple[str, ...] = (
    "age=18-24|placement=feed",
    "age=25-34|placement=feed",
    "age=35+|placement=feed",
    "age=18-24|placement=search",
)


def _default_ctr() -> dict[str, float]:
    return {"baseline": 0.0, "early_boost": 0.12, "middle_boost": 0.07, "late_boost": 0.03,
            "full_boost": 0.15, "reduction": -0.06, "placebo": 0.0}


def _default_cvr() -> dict[str, float]:
    return {"baseline": 0.0, "early_boost": 0.05, "middle_boost": 0.03, "late_boost": 0.01,
            "full_boost": 0.06, "reduction": -0.03, "placebo": 0.0}


def _default_watch() -> dict[str, float]:
    return {"baseline": 0.0, "early_boost": 0.04, "middle_boost": 0.03, "late_boost": 0.02,
            "full_boost": 0.05, "reduction": -0.02, "placebo": 0.0}


@dataclass(frozen=True)
class SimulationEffects:
    """The effects a simulated export carries (all lifts relative to baseline).

    For video ``j`` in industry ``k`` and variant ``v`` the per-impression click probability is
    ``p_bj * (1 + ctr_lift[v] * m_k + eta_vj) * exp(ctr_dose_slope * achieved_delta_vj)`` with
    ``p_bj = expit(logit(base_ctr) + u_j)``, ``u_j ~ N(0, video_sd_logit)`` (a video random
    effect, so impressions of one video are correlated and clustering matters),
    ``eta_vj ~ N(0, lift_sd)`` (video-to-video variation of the lift, mean zero) and
    ``m_k = industry_modifier.get(k, 1)``. Conversions per click follow the same form with
    ``cvr_lift``; watch time per impression has mean ``base_watch_s * w_j * (1 + watch_lift[v]
    * m_k + eta)`` with a lognormal video effect ``w_j`` of mean 1 and per-impression sd
    ``watch_sd_s``. Because ``u_j``, ``w_j`` and ``eta`` are independent of the variant, the
    population (ratio-of-expectations) relative lift of variant ``v`` in industry ``k`` is
    exactly ``lift[v] * m_k`` (without a dose term); :func:`planted_truth` returns the pooled
    and per-industry values, dose term included.
    """

    ctr_lift: Mapping[str, float] = field(default_factory=_default_ctr)
    cvr_lift: Mapping[str, float] = field(default_factory=_default_cvr)
    watch_lift: Mapping[str, float] = field(default_factory=_default_watch)
    industry_modifier: Mapping[str, float] = field(default_factory=dict)
    base_ctr: float = 0.02
    base_cvr: float = 0.05
    base_watch_s: float = 8.0
    watch_sd_s: float = 6.0
    video_sd_logit: float = 0.35
    video_sd_watch: float = 0.25
    lift_sd: float = 0.06
    ctr_dose_slope: float = 0.0
    planned_shares: Mapping[str, float] | None = None
    served_share_bias: Mapping[str, float] = field(default_factory=dict)
    cost_per_mille: float = 6.0


def planted_truth(videos: pd.DataFrame, effects: SimulationEffects,
                  achieved_delta: pd.DataFrame | None = None) -> dict[str, Any]:
    """The true effects of a simulation, keyed like the analysis (ctr, cvr, watch_time).

    Every video gets the same expected traffic per arm and, in expectation, the same base
    rates, so the pooled (ratio-of-expectations) relative lift of variant ``v`` is, over
    videos ``j``, ``mean(a_j) - 1`` for CTR with ``a_j = (1 + ctr_lift[v] m_j) exp(slope
    delta_vj)``; ``mean(a_j b_j) / mean(a_j) - 1`` for CVR (conversions per click weight by
    clicks) with ``b_j = 1 + cvr_lift[v] m_j``; and ``mean(1 + watch_lift[v] m_j) - 1`` for
    watch time. Pass the same ``achieved_delta`` given to the simulator when it planted a dose
    term. ``*_by_industry`` restricts the means to one industry's videos.
    """
    industries = videos["industry"].fillna("unknown").astype(str).to_numpy()
    vids = videos["video_id"].astype(str).to_numpy()
    mod = np.array([effects.industry_modifier.get(k, 1.0) for k in industries])
    lookup: dict[tuple[str, str], float] = {}
    if achieved_delta is not None:
        for vid, var, d in achieved_delta[["video_id", "variant", "achieved_delta"]].itertuples(index=False):
            lookup[(str(vid), str(var))] = float(d)

    def lifts(mask: np.ndarray) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {"ctr": {}, "cvr": {}, "watch_time": {}}
        base_dose = np.exp(effects.ctr_dose_slope * np.array([lookup.get((v, "baseline"), 0.0) for v in vids[mask]]))
        for variant in VARIANTS[1:]:
            dose = np.exp(effects.ctr_dose_slope * np.array([lookup.get((v, variant), 0.0) for v in vids[mask]]))
            a = (1 + effects.ctr_lift.get(variant, 0.0) * mod[mask]) * dose
            b = 1 + effects.cvr_lift.get(variant, 0.0) * mod[mask]
            out["ctr"][variant] = float(a.mean() / base_dose.mean() - 1)
            out["cvr"][variant] = float((a * b).mean() / a.mean() - 1)
            out["watch_time"][variant] = float((1 + effects.watch_lift.get(variant, 0.0) * mod[mask]).mean() - 1)
        return out

    truth: dict[str, Any] = lifts(np.ones(len(vids), dtype=bool))
    per_industry = {k: lifts(industries == k) for k in sorted(set(industries))}
    truth["ctr_by_industry"] = {k: v["ctr"] for k, v in per_industry.items()}
    truth["cvr_by_industry"] = {k: v["cvr"] for k, v in per_industry.items()}
    truth["ctr_dose_slope_log"] = float(effects.ctr_dose_slope)
    truth["base_ctr"] = effects.base_ctr
    truth["base_cvr"] = effects.base_cvr
    return truth


def simulate_ab_rows(
    videos: pd.DataFrame,
    effects: SimulationEffects | None = None,
    seed: int = 0,
    days: int = 7,
    segments: Sequence[str] = DEFAULT_SEGMENTS,
    impressions_per_arm: int = 3000,
    experiment_id: str = "demo-exp-1",
    start_date: _dt.date = _dt.date(2026, 11, 1),
    achieved_delta: pd.DataFrame | None = None,
    variants: Sequence[str] = VARIANTS,
) -> pd.DataFrame:
    """Export rows (the ingestion format) with planted effects, as a DataFrame.

    ``videos`` has ``video_id`` (string) and ``industry``. ``impressions_per_arm`` is the
    expected impressions per video x variant x day at equal allocation (Poisson, split over
    ``segments`` multinomially); clicks and conversions are binomial given the probabilities
    described on :class:`SimulationEffects`. ``achieved_delta`` (video_id, variant,
    achieved_delta) feeds the dose term. The true values are :func:`planted_truth`.
    """
    effects = effects or SimulationEffects()
    rng = np.random.default_rng(seed)
    vids = videos["video_id"].astype(str).map(lambda v: validate_video_id(v, where="simulate_ab_export videos")).to_numpy()
    industry = videos["industry"].fillna("unknown").astype(str).to_numpy() if "industry" in videos else np.full(len(vids), "unknown")
    variants = list(variants)
    shares = dict(effects.planned_shares or {v: 1.0 / len(variants) for v in variants})
    n_v, n_s = len(vids), len(segments)

    u = rng.normal(0.0, effects.video_sd_logit, n_v)
    p_base = 1.0 / (1.0 + np.exp(-(math.log(effects.base_ctr / (1 - effects.base_ctr)) + u)))
    u_c = rng.normal(0.0, effects.video_sd_logit, n_v)
    q_base = 1.0 / (1.0 + np.exp(-(math.log(effects.base_cvr / (1 - effects.base_cvr)) + u_c)))
    w_base = effects.base_watch_s * np.exp(rng.normal(0.0, effects.video_sd_watch, n_v) - effects.video_sd_watch**2 / 2)
    mod = np.array([effects.industry_modifier.get(k, 1.0) for k in industry])
    delta_lookup: dict[tuple[str, str], float] = {}
    if achieved_delta is not None:
        for vid, var, d in achieved_delta[["video_id", "variant", "achieved_delta"]].itertuples(index=False):
            delta_lookup[(str(vid), str(var))] = float(d)

    frames = []
    dates = [start_date + _dt.timedelta(days=d) for d in range(days)]
    for variant in variants:
        eta = rng.normal(0.0, effects.lift_sd, (3, n_v)) if variant != "baseline" else np.zeros((3, n_v))
        dose = np.array([delta_lookup.get((v, variant), 0.0) for v in vids])
        p = np.clip(p_base * (1 + effects.ctr_lift.get(variant, 0.0) * mod + eta[0])
                    * np.exp(effects.ctr_dose_slope * dose), 1e-6, 0.999)
        q = np.clip(q_base * (1 + effects.cvr_lift.get(variant, 0.0) * mod + eta[1]), 1e-6, 0.999)
        w = np.maximum(w_base * (1 + effects.watch_lift.get(variant, 0.0) * mod + eta[2]), 0.1)
        lam = impressions_per_arm * shares[variant] * len(variants) * effects.served_share_bias.get(variant, 1.0)
        total = rng.poisson(lam, (n_v, days))
        split = rng.multinomial(total, np.full(n_s, 1.0 / n_s))
        clicks = rng.binomial(split, p[:, None, None])
        conversions = rng.binomial(clicks, q[:, None, None])
        n = split.astype(float)
        mu = w[:, None, None]
        # watch time of n impressions with mean mu and sd s: the sum is ~normal, and the sum of
        # squares follows from the sample variance (chi-square with n-1 df) exactly as for
        # normal draws: sumsq = sum^2 / n + (n - 1) * s2.
        sd = effects.watch_sd_s
        wsum = np.round(np.maximum(rng.normal(n * mu, np.sqrt(np.maximum(n, 1)) * sd), 0.0) * (n > 0), 3)
        s2 = sd**2 * rng.chisquare(np.maximum(n - 1, 1)) / np.maximum(n - 1, 1)
        # rounded up so the written sums still satisfy n * sumsq >= sum^2 after rounding
        wsq = np.ceil(np.where(n > 0, wsum**2 / np.maximum(n, 1) + np.maximum(n - 1, 0) * s2, 0.0) * 1000) / 1000
        idx_v, idx_d, idx_s = np.meshgrid(np.arange(n_v), np.arange(days), np.arange(n_s), indexing="ij")
        frames.append(pd.DataFrame({
            "experiment_id": experiment_id,
            "video_id": vids[idx_v.ravel()],
            "variant": variant,
            "date": [dates[i].isoformat() for i in idx_d.ravel()],
            "segment": np.asarray(segments, dtype=object)[idx_s.ravel()],
            "impressions": split.ravel(),
            "clicks": clicks.ravel(),
            "conversions": conversions.ravel(),
            "spend": np.round(split.ravel() * effects.cost_per_mille / 1000.0, 4),
            "watch_time_s_sum": wsum.ravel(),
            "watch_time_s_sumsq": wsq.ravel(),
            "planned_share": shares[variant],
        }))
    return pd.concat(frames, ignore_index=True)


def simulate_ab_export(
    videos: pd.DataFrame,
    path: str | os.PathLike[str],
    effects: SimulationEffects | None = None,
    seed: int = 0,
    days: int = 7,
    segments: Sequence[str] = DEFAULT_SEGMENTS,
    impressions_per_arm: int = 3000,
    experiment_id: str = "demo-exp-1",
    start_date: _dt.date = _dt.date(2026, 11, 1),
    achieved_delta: pd.DataFrame | None = None,
    variants: Sequence[str] = VARIANTS,
) -> Path:
    """Write :func:`simulate_ab_rows` as an export (CSV or Parquet by suffix) for the inbox.

    The effects it carries are documented on :class:`SimulationEffects`; their true values
    are :func:`planted_truth` ``(videos, effects)``. The file is written under a hidden
    temporary name and renamed into place, so an inbox scan never sees half a file.
    """
    path = Path(path)
    out = simulate_ab_rows(videos, effects, seed=seed, days=days, segments=segments,
                           impressions_per_arm=impressions_per_arm, experiment_id=experiment_id,
                           start_date=start_date, achieved_delta=achieved_delta, variants=variants)
    with atomic_path(path) as tmp:  # tmp is a hidden sibling: scan_inbox skips it
        if path.suffix.lower() == ".parquet":
            out.to_parquet(tmp, index=False)
        else:
            out.to_csv(tmp, index=False)
    return path


def truth_json(videos: pd.DataFrame, effects: SimulationEffects, achieved_delta: pd.DataFrame | None = None) -> str:
    """:func:`planted_truth` as JSON (for run metadata)."""
    return json.dumps(planted_truth(videos, effects, achieved_delta), indent=2, sort_keys=True)
