"""A/B results: the export schema, per-row validation and transactional upsert.

Ad platforms export results at the grain ``experiment x video x variant x day x segment``;
that grain (not impressions) is what lands in DuckDB, so the analysis aggregates sufficient
statistics (sums, sums of squares) without ever seeing an impression row.

An export dropped into an inbox folder is validated whole. Every bad row is listed with its
file, row number and reason; a bad file is moved to ``rejected/`` beside the inbox with a
``.errors.txt`` and the warehouse is not touched. A good file is upserted on the natural key in
one transaction under the warehouse writer lock, and only after the commit is it moved to
``done/``; re-ingesting the same file therefore changes nothing.

Platform exports (TikTok, Meta, a generic long CSV) are first turned into this schema by a
declarative column map (:mod:`align_core.experiments.ab_mapping`); the variants a row may name are the
experiment's registered arms (:mod:`align_core.experiments.config`), the default registry otherwise.
The demo's simulator lives in ``align_demo.ab_simulator``.

Every experiment a row names must be registered first (``align-ab-plan`` or
:func:`register_experiment`), so a typo in an id cannot start a new experiment;
``ingest_export(..., register=True)`` (``align-import-ab --register``) records new ones. Counts
are parsed as integers without a float (exact to 2^63-1); files are decoded by
:mod:`align_core.experiments.export_text` (UTF-8, UTF-16, Windows-1252, or refused).

No Dagster import here: the sensor and asset that wrap these functions live in ``align_assets``.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import io
import math
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from align_core.experiments.config import ensure_registry_table, registered_variants
from align_core.experiments.experiments_table import EXPERIMENTS_DDL, record_experiment, save_experiment_file
from align_core.experiments.export_text import decode_export_bytes, parse_count
from align_core.inputs.ids import SCIENTIFIC_ID, VIDEO_ID_PATTERN, InvalidVideoIdError, validate_video_id
from align_core.io.atomic import atomic_write_text
from align_core.io.hashing import file_sha256
from align_core.io.warehouse import read_connection, table_exists, transaction, write_connection
from align_core.stimuli.plans import DEFAULT_VARIANTS, variant_names

__all__ = [
    "AMOUNT_COLUMNS",
    "COUNT_COLUMNS",
    "ExportRules",
    "IngestReport",
    "KEY_COLUMNS",
    "REQUIRED_COLUMNS",
    "SIMULATED_COLUMN",
    "SUMSQ_COLUMN",
    "VIEW_COLUMNS",
    "ensure_tables",
    "inbox_mapping",
    "ingest_export",
    "known_videos_from_warehouse",
    "NULLABLE_COLUMNS",
    "register_experiment",
    "registered_experiment_ids",
    "scan_inbox",
    "stored_ab_totals",
]

if TYPE_CHECKING:
    from align_core.experiments.ab_mapping import ExportMapping

#: Which arms a row may name: one list for every experiment, or a list per experiment id
#: (experiments not in the mapping fall back to the default registry).
KnownVariants = Sequence[str] | Mapping[str, Sequence[str]]

KEY_COLUMNS: tuple[str, ...] = ("experiment_id", "video_id", "variant", "date", "segment")
COUNT_COLUMNS: tuple[str, ...] = ("impressions", "clicks", "conversions")
AMOUNT_COLUMNS: tuple[str, ...] = ("spend", "watch_time_s_sum")
REQUIRED_COLUMNS: tuple[str, ...] = KEY_COLUMNS + COUNT_COLUMNS + AMOUNT_COLUMNS
# Optional measures: the sum of squared watch times (native exports and the simulator carry it;
# platforms report only averages, so it is NULL for mapped exports) and video-view counts
# (plays, 2 s / 6 s views, 25/50/75/100 % completions). NULL when the export lacks them.
SUMSQ_COLUMN = "watch_time_s_sumsq"
VIEW_COLUMNS: tuple[str, ...] = (
    "video_plays",
    "views_2s",
    "views_6s",
    "views_p25",
    "views_p50",
    "views_p75",
    "views_p100",
)
MEASURE_COLUMNS: tuple[str, ...] = (SUMSQ_COLUMN,) + VIEW_COLUMNS
#: Required columns a mapping may declare "not reported": stored as NULL, never invented.
NULLABLE_COLUMNS: tuple[str, ...] = ("conversions", "spend", "watch_time_s_sum")
STORED_COLUMNS: tuple[str, ...] = REQUIRED_COLUMNS + MEASURE_COLUMNS
# Optional: the planned share of traffic per arm (constant per experiment x variant), and a
# human-readable experiment name. Both feed the ``experiments``/``experiment_arms`` tables.
# ``simulated``: true on rows an A/B simulator made (the demo's), so no table or report can pass
# them off as real viewers; blank or absent is false.
SIMULATED_COLUMN = "simulated"
OPTIONAL_COLUMNS: tuple[str, ...] = ("planned_share", "experiment_name", SIMULATED_COLUMN) + MEASURE_COLUMNS
_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no", ""}
EXPORT_SUFFIXES: tuple[str, ...] = (".csv", ".parquet")

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_FLOATY_ID = re.compile(r"^[+-]?\d+\.\d*$")
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
    conversions BIGINT,
    spend DOUBLE,
    watch_time_s_sum DOUBLE,
    watch_time_s_sumsq DOUBLE,
    source_file VARCHAR NOT NULL,
    video_plays BIGINT,
    views_2s BIGINT,
    views_6s BIGINT,
    views_p25 BIGINT,
    views_p50 BIGINT,
    views_p75 BIGINT,
    views_p100 BIGINT,
    simulated BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (experiment_id, video_id, variant, date, segment)
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
    ensure_registry_table(con)
    # warehouses written before the view columns existed gain them (NULL for old rows)
    existing = dict(
        con.execute(
            "SELECT column_name, is_nullable FROM information_schema.columns WHERE table_name = 'ab_results'"
        ).fetchall()
    )
    for column in VIEW_COLUMNS:
        if column not in existing:
            con.execute(f"ALTER TABLE ab_results ADD COLUMN {column} BIGINT")
    if SIMULATED_COLUMN not in existing:
        con.execute(f"ALTER TABLE ab_results ADD COLUMN {SIMULATED_COLUMN} BOOLEAN DEFAULT FALSE")
    # platforms report no sum of squares; a mapping may declare conversions, spend or watch time
    # "not reported" (NULL, never an invented 0)
    for column in (SUMSQ_COLUMN,) + NULLABLE_COLUMNS:
        if existing.get(column) == "NO":
            con.execute(f"ALTER TABLE ab_results ALTER COLUMN {column} DROP NOT NULL")


# ---------------------------------------------------------------------------------------------
# reading and validation
# ---------------------------------------------------------------------------------------------


def _read_export(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """Read an export as TEXT columns (ids must never pass through a float parser)."""
    errors: list[str] = []
    suffix = path.suffix.lower()
    if suffix == ".csv":
        text, _encoding = decode_export_bytes(path.read_bytes(), path.name)
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False)
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
            frame[column] = frame[column].map(
                lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
            )
            if column == "date":
                frame[column] = frame[column].str.slice(0, 10).where(frame[column].str.len() >= 10, frame[column])
        return frame, errors
    raise ValueError(f"{path}: unsupported export type {suffix!r}; use one of {EXPORT_SUFFIXES}")


def validate_export(
    frame: pd.DataFrame,
    source: str,
    known_videos: set[str] | None = None,
    known_variants: KnownVariants | None = None,
    row_numbers: Sequence[int] | None = None,
    header_lines: int = 1,
    rules: ExportRules | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Check every row of a text-typed export; return the typed frame and per-row errors.

    Rows are numbered as data rows starting at 1 (the CSV header is line 1, so data row ``r``
    is on line ``r + 1``); ``row_numbers`` gives them when the frame is a subset of a file's
    rows, ``header_lines`` the lines above the first data row. Each message names the file,
    the row, the column and the value. ``known_variants`` is the registry's arm names (one list,
    or one per experiment id); None: the default registry's. ``rules`` carries what a mapping
    declares (fields not reported, view-through conversions) and the registered experiments.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        return frame, [
            f"{source}: missing required column(s) {', '.join(missing)}; an export needs {', '.join(REQUIRED_COLUMNS)}"
        ]
    if len(frame) == 0:
        return frame, [f"{source}: the export has a header but no rows"]
    checks = _ExportChecks(frame, source, row_numbers, header_lines, rules or ExportRules())
    checks.check_ids(known_videos)
    checks.check_registered()
    checks.check_variants(known_variants)
    date_bad = checks.check_dates_and_segments()
    numeric = checks.check_numbers()
    checks.check_consistency(numeric)
    checks.check_duplicates(date_bad)
    checks.check_planned_shares()
    checks.check_simulated()
    return checks.typed(numeric), checks.errors


@dataclass(frozen=True)
class ExportRules:
    """What an export may do beyond the plain schema, and the experiments it may name.

    ``not_reported``: columns of :data:`NULLABLE_COLUMNS` the source does not report (blank
    cells, stored as NULL). ``conversions_may_exceed_clicks``: conversions include view-through
    ones, so they are not bounded by clicks. ``registered_experiments``: the experiment ids a
    row may name (None: any, as with ``--register``).
    """

    not_reported: frozenset[str] = frozenset()
    conversions_may_exceed_clicks: bool = False
    registered_experiments: frozenset[str] | None = None


class _ExportChecks:
    """The checks of :func:`validate_export` on one text-typed frame; messages in the order found."""

    def __init__(
        self,
        frame: pd.DataFrame,
        source: str,
        row_numbers: Sequence[int] | None,
        header_lines: int,
        rules: ExportRules,
    ) -> None:
        self.rules = rules
        self.frame = frame.copy()
        self.unregistered = np.zeros(len(frame), dtype=bool)  # their arms are unknown: not checked
        for column in KEY_COLUMNS:
            self.frame[column] = self.frame[column].astype(str).str.strip()
        self.source, self.header_lines = source, header_lines
        self.row_no = (
            np.asarray(row_numbers, dtype=np.int64) if row_numbers is not None else np.arange(1, len(frame) + 1)
        )
        self.bad = np.zeros(len(frame), dtype=bool)
        self.errors: list[str] = []

    def flag(self, mask: np.ndarray, message: Any) -> None:
        """One message per row in ``mask`` (text, or a function of the row index); the rows turn bad."""
        for idx in np.flatnonzero(mask):
            text = message(idx) if callable(message) else message
            self.errors.append(
                f"{self.source}: row {self.row_no[idx]} (line {self.row_no[idx] + self.header_lines}): {text}"
            )
        self.bad |= mask

    def check_ids(self, known_videos: set[str] | None) -> None:
        """Ids are strings, not floats or scientific notation, safe as path parts (and known videos)."""
        frame = self.frame
        for column in ("experiment_id", "video_id"):
            # vectorised fast path: only ids failing the pattern go through the per-row messages
            suspect = (
                ~frame[column].str.match(VIDEO_ID_PATTERN).to_numpy()
                | frame[column].str.match(SCIENTIFIC_ID).to_numpy()
            )
            for idx in np.flatnonzero(suspect):
                self._check_one_id(column, idx)
        if known_videos is not None:
            unknown = ~frame["video_id"].isin(known_videos).to_numpy() & ~self.bad
            self.flag(unknown, lambda i: f"unknown video {frame['video_id'].iat[i]!r} (not in the video catalog)")

    def _check_one_id(self, column: str, idx: int) -> None:
        value = self.frame[column].iat[idx]
        one = np.zeros(len(self.frame), dtype=bool)
        one[idx] = True
        if _FLOATY_ID.match(value):
            self.flag(
                one,
                f"{column} {value!r} looks like a number that went through a float "
                "parser (ids must be exact digit strings; 19-digit ids overflow float64)",
            )
            return
        try:
            validate_video_id(value)
        except InvalidVideoIdError as exc:
            self.flag(one, f"{column}: {exc}")

    def check_variants(self, known_variants: KnownVariants | None) -> None:
        """Each row names one of its experiment's registered arms."""
        frame = self.frame
        default_arms = variant_names(DEFAULT_VARIANTS)
        if known_variants is None or not isinstance(known_variants, Mapping):
            arms_of = lambda _exp: tuple(known_variants if known_variants is not None else default_arms)  # noqa: E731
        else:
            arms_of = lambda exp: tuple(known_variants.get(exp, default_arms))  # noqa: E731
        variant_ok = np.zeros(len(frame), dtype=bool)
        for exp in frame["experiment_id"].unique():
            rows_of = (frame["experiment_id"] == exp).to_numpy()
            variant_ok |= rows_of & frame["variant"].isin(list(arms_of(exp))).to_numpy()
        self.flag(
            ~variant_ok & ~self.unregistered,
            lambda i: (
                f"unknown variant {frame['variant'].iat[i]!r} for experiment "
                f"{frame['experiment_id'].iat[i]!r}; its registry has "
                f"{', '.join(arms_of(frame['experiment_id'].iat[i]))}"
            ),
        )

    def check_dates_and_segments(self) -> np.ndarray:
        """ISO dates (turned into dates) and non-empty segments; returns the rows with a bad date."""
        frame = self.frame
        dates = pd.to_datetime(frame["date"], format="%Y-%m-%d", errors="coerce")
        date_bad = dates.isna().to_numpy() | ~frame["date"].str.match(_DATE).to_numpy()
        self.flag(date_bad, lambda i: f"bad date {frame['date'].iat[i]!r}; expected YYYY-MM-DD")
        frame["date"] = dates.dt.date
        seg_bad = (frame["segment"] == "").to_numpy()
        self.flag(seg_bad, "empty segment (use 'all' when the export has no breakdown)")
        return date_bad

    def check_registered(self) -> None:
        """Every experiment id is registered (a typo must not start a new experiment)."""
        registered = self.rules.registered_experiments
        if registered is None:
            return
        ids = self.frame["experiment_id"]
        for exp in ids[~ids.isin(registered) & ~pd.Series(self.bad, index=ids.index)].unique():
            rows = self.row_no[(ids == exp).to_numpy()]
            close = difflib.get_close_matches(exp, sorted(registered), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            known = ", ".join(sorted(registered)) or "none"
            self.errors.append(
                f"{self.source}: experiment {exp!r} (row(s) {_row_ranges(rows)}) is not registered "
                f"(registered: {known}); {hint}register it first (align-ab-plan experiment.yaml) or "
                "import with --register to start a new experiment"
            )
            self.unregistered |= (ids == exp).to_numpy()
        self.bad |= self.unregistered

    def check_numbers(self) -> dict[str, np.ndarray]:
        """Counts are exact integers (no float on the way, below 2^63); amounts finite and >= 0.

        Returns each column as float (NaN: missing or invalid) for the consistency checks; the
        exact counts are kept in ``self.counts``. Columns the source does not report may be blank.
        """
        numeric: dict[str, np.ndarray] = {}
        self.counts: dict[str, np.ndarray] = {}
        for column in COUNT_COLUMNS:
            self.counts[column], numeric[column] = self._check_counts(column)
        for column in AMOUNT_COLUMNS:
            numeric[column] = self._check_amounts(column)
        # optional measures: blank is NULL (not reported), anything else must be a valid number
        for column in MEASURE_COLUMNS:
            if column in VIEW_COLUMNS:
                self.counts[column], numeric[column] = self._check_counts(column)
            else:
                numeric[column] = self._check_amounts(column)
        return numeric

    def _blank_allowed(self, column: str, text: pd.Series) -> np.ndarray:
        """Blank cells that mean "not reported": in optional measures and declared columns."""
        if column in MEASURE_COLUMNS or column in self.rules.not_reported:
            return (text == "").to_numpy()
        return np.zeros(len(text), dtype=bool)

    def _check_counts(self, column: str) -> tuple[np.ndarray, np.ndarray]:
        """Exact int64 counts (0 where blank or bad) and the same as float with NaN there."""
        exact = np.zeros(len(self.frame), dtype=np.int64)
        as_float = np.full(len(self.frame), np.nan)
        if column not in self.frame.columns:
            return exact, as_float
        text = self.frame[column].astype(str).str.strip()
        blank = self._blank_allowed(column, text)
        # fast path: up to 18 digits always fit an int64; everything else goes through parse_count
        plain = text.str.fullmatch(r"\d{1,18}").to_numpy()
        exact[plain] = text[plain].astype(np.int64).to_numpy()
        for idx in np.flatnonzero(~plain & ~blank):
            value, problem = parse_count(text.iat[idx])
            if value is not None:
                exact[idx] = value
                plain[idx] = True
            else:
                self.flag(_one(len(text), int(idx)), f"{column} {problem}")
        as_float[plain] = exact[plain].astype(float)
        return exact, as_float

    def _check_amounts(self, column: str) -> np.ndarray:
        """Amounts as float: finite and >= 0, NaN where blank (allowed) or invalid (flagged)."""
        if column not in self.frame.columns:
            return np.full(len(self.frame), np.nan)
        text = self.frame[column].astype(str).str.strip()
        blank = self._blank_allowed(column, text)
        values = pd.to_numeric(text.where(~blank, "nan"), errors="coerce").to_numpy(dtype=float)
        self.flag(~blank & ~np.isfinite(values), lambda i: f"{column} {text.iat[i]!r} is not a finite number")
        with np.errstate(invalid="ignore"):
            self.flag(values < 0, lambda i: f"negative {column} ({values[i]:g})")
        return values

    def check_consistency(self, numeric: Mapping[str, np.ndarray]) -> None:
        """Clicks <= impressions, conversions <= clicks, watch-time sums that fit together."""
        imp, clk, conv = numeric["impressions"], numeric["clicks"], numeric["conversions"]
        exact, flag = self.counts, self.flag
        e_imp, e_clk, e_conv = exact["impressions"], exact["clicks"], exact["conversions"]
        both = np.isfinite(imp) & np.isfinite(clk)  # compared only where both counts are valid
        with np.errstate(invalid="ignore"):
            flag(both & (e_clk > e_imp), lambda i: f"clicks ({e_clk[i]}) > impressions ({e_imp[i]})")
            if not self.rules.conversions_may_exceed_clicks:
                flag(
                    np.isfinite(clk) & np.isfinite(conv) & (e_conv > e_clk),
                    lambda i: (
                        f"conversions ({e_conv[i]}) > clicks ({e_clk[i]}); if they include view-through "
                        "conversions, set conversions_may_exceed_clicks: true in the mapping"
                    ),
                )
            wsum, wsq = numeric["watch_time_s_sum"], numeric[SUMSQ_COLUMN]
            # Cauchy-Schwarz: n * sum(x^2) >= (sum x)^2 for any n values; a violation means the
            # columns were swapped or aggregated at a different grain (checked where given).
            cs_bad = np.isfinite(wsq) & (imp * wsq < wsum**2 * (1 - 1e-9) - 1e-6)
            flag(
                cs_bad,
                lambda i: (
                    f"watch_time_s_sumsq ({wsq[i]:g}) is smaller than watch_time_s_sum^2 / "
                    f"impressions ({wsum[i] ** 2 / max(imp[i], 1):g}); columns swapped or wrong grain"
                ),
            )
            flag((imp == 0) & (wsum > 0), lambda i: "watch time without impressions")

    def check_duplicates(self, date_bad: np.ndarray) -> None:
        duplicated = self.frame.duplicated(list(KEY_COLUMNS), keep=False).to_numpy() & ~date_bad
        self.flag(
            duplicated,
            lambda i: "duplicate natural key (experiment_id, video_id, variant, date, segment) within the file",
        )

    def check_planned_shares(self) -> None:
        """Shares in (0, 1], one per arm, summing to at most 1 per experiment (when the file has them)."""
        frame, source = self.frame, self.source
        if "planned_share" not in frame.columns:
            return
        share = pd.to_numeric(frame["planned_share"].astype(str).str.strip(), errors="coerce").to_numpy(dtype=float)
        self.flag(
            ~np.isfinite(share) | (share <= 0) | (share > 1),
            lambda i: f"planned_share {frame['planned_share'].iat[i]!r} must be in (0, 1]",
        )
        frame["planned_share"] = share
        ok = ~self.bad
        if not ok.any():
            return
        arms = frame.loc[ok].groupby(["experiment_id", "variant"])["planned_share"].nunique()
        for (exp, var), _count in arms[arms > 1].items():
            self.errors.append(f"{source}: planned_share differs between rows of experiment {exp!r} variant {var!r}")
        totals = (
            frame.loc[ok].drop_duplicates(["experiment_id", "variant"]).groupby("experiment_id")["planned_share"].sum()
        )
        # a file may restate only some arms, so its shares may sum to less than 1, never more
        for exp, total in totals[totals > 1 + 1e-6].items():
            self.errors.append(f"{source}: planned shares of experiment {exp!r} sum to {total:.4f} (> 1)")

    def check_simulated(self) -> None:
        """``simulated`` (optional): true/false, 1/0, yes/no or blank (false)."""
        if SIMULATED_COLUMN not in self.frame.columns:
            return
        text = self.frame[SIMULATED_COLUMN].astype(str).str.strip().str.lower()
        bad = (~text.isin(_TRUE | _FALSE)).to_numpy()
        self.flag(bad, lambda i: f"simulated {text.iat[i]!r} is not true/false (or blank)")

    def typed(self, numeric: Mapping[str, np.ndarray]) -> pd.DataFrame:
        """The frame with its measures as numbers (0 where invalid: such a file is rejected anyway)."""
        frame = self.frame
        for column in COUNT_COLUMNS:
            if column in self.rules.not_reported:
                frame[column] = _nullable_ints(self.counts[column], numeric[column])
            else:
                frame[column] = self.counts[column]
        for column in AMOUNT_COLUMNS:
            if column in self.rules.not_reported:
                frame[column] = pd.array(
                    np.where(np.isfinite(numeric[column]), numeric[column], np.nan), dtype="Float64"
                )
            else:
                frame[column] = np.where(np.isfinite(numeric[column]), numeric[column], 0.0)
        frame[SUMSQ_COLUMN] = pd.array(
            np.where(np.isfinite(numeric[SUMSQ_COLUMN]), numeric[SUMSQ_COLUMN], np.nan), dtype="Float64"
        )
        for column in VIEW_COLUMNS:
            frame[column] = _nullable_ints(self.counts[column], numeric[column])
        flags = frame[SIMULATED_COLUMN] if SIMULATED_COLUMN in frame.columns else pd.Series("", index=frame.index)
        frame[SIMULATED_COLUMN] = flags.astype(str).str.strip().str.lower().isin(_TRUE)
        return frame


def _nullable_ints(exact: np.ndarray, as_float: np.ndarray) -> Any:
    """Exact counts as a nullable Int64 array: NULL where the float view is NaN (not reported)."""
    values = pd.array(exact, dtype="Int64")
    values[np.isnan(as_float)] = pd.NA
    return values


def _one(length: int, idx: int) -> np.ndarray:
    mask = np.zeros(length, dtype=bool)
    mask[idx] = True
    return mask


def _row_ranges(rows: Sequence[int], limit: int = 8) -> str:
    """``1-40, 52, 60-61``: row numbers as ranges (the first ``limit`` ranges, then a count)."""
    ranges: list[list[int]] = []
    for row in sorted(int(r) for r in rows):
        if ranges and row == ranges[-1][1] + 1:
            ranges[-1][1] = row
        else:
            ranges.append([row, row])
    parts = [f"{a}-{b}" if b > a else f"{a}" for a, b in ranges[:limit]]
    if len(ranges) > limit:
        parts.append(f"... ({len(rows)} rows in all)")
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# ingestion
# ---------------------------------------------------------------------------------------------


def scan_inbox(inbox_dir: str | os.PathLike[str]) -> list[Path]:
    """Export files waiting in ``inbox_dir`` (not in done/ or rejected/), by name.

    Files in the inbox itself are in the results schema; files in a subfolder named after a
    shipped mapping (``tiktok_split_test/``, ``meta_ads_manager/``, ``generic_long/``) are
    read through that mapping (:func:`inbox_mapping`).

    Hidden files are skipped: writers (and the demo simulator) write to a hidden
    temporary name and rename it into place, so a half-written export is never picked up.
    """
    inbox = Path(inbox_dir)
    if not inbox.is_dir():
        return []
    from align_core.experiments.ab_mapping import shipped_mappings

    # platform exports wait in a subfolder named after their mapping (inbox/tiktok_split_test/...)
    folders = [inbox] + [inbox / name for name in sorted(shipped_mappings()) if (inbox / name).is_dir()]
    return [
        p
        for folder in folders
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in EXPORT_SUFFIXES
    ]


def inbox_mapping(path: str | os.PathLike[str], inbox_dir: str | os.PathLike[str]) -> str | None:
    """The mapping an inbox file needs: its subfolder's name, None for the results schema itself."""
    parent = Path(path).parent
    return parent.name if parent.resolve() != Path(inbox_dir).resolve() else None


def _move_aside(path: Path, folder: Path, sha: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    if target.exists():
        target = folder / f"{path.stem}.{sha[:12]}{path.suffix}"
        if target.exists():
            target.unlink()
    shutil.move(str(path), str(target))
    return target


def known_videos_from_warehouse(database: Path) -> set[str] | None:
    if not database.exists():
        return None
    # read_connection retries while another process holds DuckDB's file lock.
    with read_connection(database) as con:
        if not table_exists(con, "videos"):
            return None
        return {str(v) for (v,) in con.execute("SELECT CAST(video_id AS VARCHAR) FROM videos").fetchall()}


def registered_arms(database: str | os.PathLike[str]) -> dict[str, tuple[str, ...]]:
    """Arm names of every experiment registered in the warehouse (``experiment_variants``)."""
    database = Path(database)
    if not database.exists():
        return {}
    with read_connection(database) as con:
        return {exp: variant_names(specs) for exp, specs in registered_variants(con).items()}


def registered_experiment_ids(database: str | os.PathLike[str]) -> frozenset[str]:
    """Experiment ids in the warehouse's ``experiments`` table (empty before any registration)."""
    database = Path(database)
    if not database.exists():
        return frozenset()
    with read_connection(database) as con:
        if not table_exists(con, "experiments"):
            return frozenset()
        return frozenset(str(e) for (e,) in con.execute("SELECT experiment_id FROM experiments").fetchall())


def read_and_validate(
    path: Path,
    known_videos: set[str] | None,
    known_variants: KnownVariants | None,
    mapping: ExportMapping | None = None,
    registered_experiments: frozenset[str] | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Read one export (through ``mapping`` when given) and check every row; nothing is written.

    ``registered_experiments``: the experiment ids rows may name (None: any)."""
    try:
        if mapping is None:
            raw, errors = _read_export(path)
            rules = ExportRules(registered_experiments=registered_experiments)
            frame, row_errors = validate_export(raw, path.name, known_videos, known_variants, rules=rules)
            return frame, errors + row_errors
        mapped = mapping.apply(mapping.read(path), path.name)
        if mapped.frame.empty and mapped.errors:
            # every row failed to map: report those reasons, not a cascade of schema errors
            return mapped.frame, mapped.errors
        rules = ExportRules(
            not_reported=mapping.not_reported_columns,
            conversions_may_exceed_clicks=mapping.conversions_may_exceed_clicks,
            registered_experiments=registered_experiments,
        )
        frame, row_errors = validate_export(
            mapped.frame,
            path.name,
            known_videos,
            known_variants,
            row_numbers=mapped.row_numbers,
            header_lines=mapped.header_lines,
            rules=rules,
        )
        return frame, mapped.errors + row_errors
    except Exception as exc:  # unreadable file: reject it whole with the reason
        how = f"the {mapping.name} mapping" if mapping is not None else path.suffix
        return pd.DataFrame(), [f"{path.name}: cannot be read as {how} ({type(exc).__name__}: {exc})"]


def ingest_export(
    path: str | os.PathLike[str],
    database: str | os.PathLike[str],
    known_videos: set[str] | None = None,
    known_variants: KnownVariants | None = None,
    check_catalog: bool = True,
    mapping: str | ExportMapping | None = None,
    move: bool = True,
    register: bool = False,
    source_name: str | None = None,
) -> IngestReport:
    """Validate one export and upsert it into ``ab_results`` (whole file or nothing).

    ``known_videos=None`` with ``check_catalog=True`` checks ids against the warehouse's
    ``videos`` table when it exists. ``known_variants=None`` takes each experiment's registered
    arms (``experiment_variants``), the default registry for experiments never registered.
    ``mapping`` (a shipped mapping's name, a YAML path, or an :class:`ExportMapping`) first
    turns a platform export into the results schema. A file with any bad row is moved to
    ``rejected/`` beside the inbox with ``<name>.errors.txt`` listing every bad row, and the
    warehouse is untouched. A good file is upserted on the natural key in one transaction under
    the writer lock, then moved to ``done/``. The rows an export carries replace stored rows
    with the same key (platform exports restate earlier days); other stored rows are untouched.
    ``move=False`` (the import CLI) leaves the file where it is and writes no errors file.
    Every experiment a row names must be registered (``experiments`` table: align-ab-plan,
    :func:`register_experiment`, or an earlier import); ``register=True`` records new ones.
    ``source_name``: the ``source_file`` recorded (default: the file's name; a rebuild re-ingesting
    ``done/<stem>.<sha>.csv`` records the name it arrived under).
    """
    from align_core.experiments.ab_mapping import ExportMapping, load_mapping

    path = Path(path)
    database = Path(database)
    sha = file_sha256(path)
    if known_videos is None and check_catalog:
        known_videos = known_videos_from_warehouse(database)
    if known_variants is None:
        known_variants = registered_arms(database)
    if mapping is not None and not isinstance(mapping, ExportMapping):
        mapping = load_mapping(mapping)

    registered = None if register else registered_experiment_ids(database)
    frame, errors = read_and_validate(path, known_videos, known_variants, mapping, registered)
    if errors:
        return _reject(path, sha, errors, move)

    rows = frame[list(STORED_COLUMNS) + [SIMULATED_COLUMN]].copy()
    rows["source_file"] = source_name or path.name
    experiments = _experiment_spans(frame)
    arms = None
    if "planned_share" in frame.columns:
        arms = frame.drop_duplicates(["experiment_id", "variant"])[["experiment_id", "variant", "planned_share"]]
    replaced = _upsert_results(database, rows, experiments, arms)
    moved = _move_aside(path, path.parent / "done", sha) if move else path
    return IngestReport(
        source=path,
        status="ingested",
        moved_to=moved,
        rows=len(rows),
        rows_replaced=replaced,
        experiments=tuple(sorted(experiments["experiment_id"])),
        impressions=int(rows["impressions"].sum()),
        sha256=sha,
    )


def _reject(path: Path, sha: str, errors: list[str], move: bool) -> IngestReport:
    """The report of a bad export; with ``move``, the file goes to ``rejected/`` beside its errors file."""
    if not move:
        return IngestReport(source=path, status="rejected", moved_to=path, sha256=sha, errors=tuple(errors))
    moved = _move_aside(path, path.parent / "rejected", sha)
    listed = errors[:_MAX_ERRORS_LISTED]
    if len(errors) > len(listed):
        listed.append(f"... and {len(errors) - len(listed)} more")
    errors_file = moved.with_name(moved.name + ".errors.txt")
    atomic_write_text(errors_file, "\n".join(listed) + "\n")
    return IngestReport(
        source=path, status="rejected", moved_to=moved, sha256=sha, errors=tuple(errors), errors_file=errors_file
    )


def _experiment_spans(frame: pd.DataFrame) -> pd.DataFrame:
    """Per experiment in a validated export: its first and last date, and its name (None if not given)."""
    experiments = frame.groupby("experiment_id").agg(start_date=("date", "min"), end_date=("date", "max")).reset_index()
    if "experiment_name" in frame.columns:
        names = frame.groupby("experiment_id")["experiment_name"].first()
        experiments["name"] = experiments["experiment_id"].map(names).replace("", None)
    else:
        experiments["name"] = None
    return experiments


def _upsert_results(database: Path, rows: pd.DataFrame, experiments: pd.DataFrame, arms: pd.DataFrame | None) -> int:
    """Write a validated export in one transaction under the writer lock; returns the rows it replaced."""
    with write_connection(database) as con:
        try:
            with transaction(con):
                ensure_tables(con)
                replaced = _replace_ab_rows(con, rows)
                # widen each experiment's date range; keep a name given earlier unless this file names it
                for exp in experiments.itertuples(index=False):
                    name = None if pd.isna(exp.name) else exp.name
                    record_experiment(con, exp.experiment_id, name, exp.start_date, exp.end_date)
                if arms is not None:
                    con.register("_incoming_arms", arms)
                    con.execute(
                        "INSERT OR REPLACE INTO experiment_arms SELECT experiment_id, variant, planned_share FROM _incoming_arms"
                    )
                    for experiment_id in sorted(set(arms["experiment_id"])):
                        save_experiment_file(con, experiment_id)
        finally:
            for view in ("_incoming_ab", "_incoming_arms"):
                try:
                    con.unregister(view)
                except Exception:
                    pass
    return replaced


def _replace_ab_rows(con: Any, rows: pd.DataFrame) -> int:
    """Replace stored ``ab_results`` rows on the natural key with ``rows``; the count replaced."""
    con.register("_incoming_ab", rows)
    replaced = con.execute(
        "SELECT count(*) FROM ab_results a JOIN _incoming_ab i USING (experiment_id, video_id, variant, date, segment)"
    ).fetchone()[0]
    con.execute(
        "DELETE FROM ab_results WHERE (experiment_id, video_id, variant, date, segment) IN "
        "(SELECT (experiment_id, video_id, variant, date, segment) FROM _incoming_ab)"
    )
    columns = ", ".join(list(STORED_COLUMNS) + ["source_file", SIMULATED_COLUMN])
    con.execute(f"INSERT INTO ab_results ({columns}) SELECT {columns} FROM _incoming_ab")
    return int(replaced)


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

    The sample-ratio-mismatch guardrail compares served impressions to these shares. The
    ``experiments`` row follows :func:`~align_core.experiments.experiments_table.record_experiment`'s
    rule (the date range only widens).
    """
    validate_video_id(experiment_id, where="experiment_id")
    total = sum(planned_shares.values())
    if abs(total - 1) > 1e-6 or any(s <= 0 for s in planned_shares.values()):
        raise ValueError(
            f"planned shares of {experiment_id!r} must be positive and sum to 1, got {dict(planned_shares)}"
        )
    arms = registered_arms(database).get(experiment_id, variant_names(DEFAULT_VARIANTS))
    unknown = sorted(set(planned_shares) - set(arms))
    if unknown:
        raise ValueError(
            f"experiment {experiment_id!r}: unknown variant(s) {unknown}; its registry has {', '.join(arms)}"
        )
    with write_connection(database) as con:
        with transaction(con):
            ensure_tables(con)
            record_experiment(con, experiment_id, name, start_date, end_date)
            con.execute("DELETE FROM experiment_arms WHERE experiment_id = ?", [experiment_id])
            for variant, share in planned_shares.items():
                con.execute("INSERT INTO experiment_arms VALUES (?, ?, ?)", [experiment_id, variant, float(share)])
            save_experiment_file(con, experiment_id)
