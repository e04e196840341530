"""Declarative column maps from ad-platform exports to the A/B results schema.

A mapping is a YAML file (shipped ones live in ``align_core/experiments/ab_mappings/``; a lab can pass its
own path) that names, for each results field, the export column holding it. Nothing about a
platform is in code: the code only renames, cleans numbers, decodes the ad name and turns an
average watch time into a sum. Keys of a mapping file::

    name: tiktok_split_test           # what --mapping takes
    title, documentation              # where the column names come from
    header_row: 1                     # the line holding the column names
    layout: wide                      # wide: one row per ad x day; long: one row per metric
    columns:                          # field -> export column, or a list (first present wins)
      ad_name, date, impressions, clicks, conversions, spend, avg_watch_time_s  (required)
      video_plays, views_2s, views_6s, views_p25, views_p50, views_p75, views_p100 (optional)
    segment_columns: [Placement]      # breakdown column(s): one -> its value, several -> "a=x|b=y"; none: "all"
    watch_time_per: video_plays       # the average watch time is per play (or per impression)
    blank_as_zero: [conversions]      # cells a platform leaves blank when the count is 0
    missing_values: ["-", "N/A"]      # text meaning "not reported"
    thousands: ","                    # digit-group separator to strip
    date_formats: ["%Y-%m-%d"]        # tried in order; the date lands as YYYY-MM-DD
    skip_rows: {Ad name: "^Total"}    # rows to drop (totals lines), by regex on a column
    long: {metric_column: Metric, value_column: Value, metrics: {Impressions: impressions, ...}}

The ad name carries the experiment, the video and the variant in one documented format,
``<experiment_id>.<video_id>.<variant>`` (:func:`encode_ad_name`): a dot can occur in none of
the three (ids and variant names are letters, digits, ``-`` and ``_``), so the name decodes
exactly. The upload manifest writes these names; this module decodes them back. Video
attributes such as industry are never read from an export: the analysis joins them from the
warehouse's ``videos`` table.

Every problem is reported per row with the file's row and line number and the export column;
a row whose ad name cannot be decoded is reported for that reason only (its other cells are
not checked against a video and variant it does not have).
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from align_core.experiments.ab_results import AMOUNT_COLUMNS, COUNT_COLUMNS, KEY_COLUMNS, SUMSQ_COLUMN, VIEW_COLUMNS
from align_core.inputs.ids import SCIENTIFIC_ID, InvalidVideoIdError, validate_video_id

__all__ = [
    "AD_NAME_FORMAT",
    "AdNameError",
    "ExportMapping",
    "decode_ad_name",
    "encode_ad_name",
    "load_mapping",
    "shipped_mappings",
]

AD_NAME_FORMAT = "<experiment_id>.<video_id>.<variant>"
REQUIRED_FIELDS: tuple[str, ...] = (
    "ad_name",
    "date",
    "impressions",
    "clicks",
    "conversions",
    "spend",
    "avg_watch_time_s",
)
OPTIONAL_FIELDS: tuple[str, ...] = VIEW_COLUMNS
FIELDS: tuple[str, ...] = REQUIRED_FIELDS + OPTIONAL_FIELDS
_NUMERIC_FIELDS: tuple[str, ...] = ("impressions", "clicks", "conversions", "spend", "avg_watch_time_s") + VIEW_COLUMNS
_CLOCK = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{2}(?:\.\d+)?)$")


class AdNameError(ValueError):
    """An ad name that does not carry experiment, video and variant in the documented format."""


def encode_ad_name(experiment_id: str, video_id: str, variant: str) -> str:
    """``<experiment_id>.<video_id>.<variant>``: the name an ad must carry on the platform."""
    parts = (
        validate_video_id(experiment_id, where="experiment_id"),
        validate_video_id(video_id, where="video_id"),
        validate_video_id(variant, where="variant"),
    )
    return ".".join(parts)


def decode_ad_name(text: str) -> tuple[str, str, str]:
    """``(experiment_id, video_id, variant)`` from an ad name, or :class:`AdNameError` saying why."""
    name = str(text).strip()
    parts = name.split(".")
    if len(parts) == 4 and SCIENTIFIC_ID.match(".".join(parts[1:3])):
        raise AdNameError(
            f"ad name {name!r}: video id {'.'.join(parts[1:3])!r} is in scientific notation; the "
            "original digits were lost when a spreadsheet or float parser touched the file"
        )
    if len(parts) != 3:
        raise AdNameError(
            f"ad name {name!r} does not decode: expected {AD_NAME_FORMAT} "
            f"(three parts separated by '.', got {len(parts)})"
        )
    labels = ("experiment_id", "video_id", "variant")
    out = []
    for label, part in zip(labels, parts, strict=False):
        try:
            out.append(validate_video_id(part))
        except InvalidVideoIdError:
            why = (
                "is in scientific notation; the original digits were lost"
                if SCIENTIFIC_ID.match(part.strip())
                else "may hold only letters, digits, '-' and '_'"
            )
            raise AdNameError(
                f"ad name {name!r} does not decode as {AD_NAME_FORMAT}: its {label} {part!r} {why}"
            ) from None
    return out[0], out[1], out[2]


@dataclass(frozen=True)
class MappedExport:
    """An export in the results schema (text columns), its rows' numbers in the file, and errors."""

    frame: pd.DataFrame
    row_numbers: np.ndarray
    errors: list[str]
    header_lines: int


class _RowProblems:
    """Per-row problems of one export, in the order found, and which rows they make bad."""

    def __init__(self, source: str, row_numbers: np.ndarray, header_lines: int):
        self.source, self.row_numbers, self.header_lines = source, row_numbers, header_lines
        self.errors: list[str] = []
        self.bad = np.zeros(len(row_numbers), dtype=bool)

    def flag(self, idx: int, text: str) -> None:
        row = self.row_numbers[idx]
        self.errors.append(f"{self.source}: row {row} (line {row + self.header_lines}): {text}")
        self.bad[idx] = True


@dataclass(frozen=True)
class ExportMapping:
    """One platform's column map (see the module docstring for the keys)."""

    name: str
    columns: Mapping[str, tuple[str, ...]]
    title: str = ""
    documentation: str = ""
    header_row: int = 1
    layout: str = "wide"
    segment_columns: tuple[str, ...] = ()
    watch_time_per: str = "video_plays"
    blank_as_zero: tuple[str, ...] = ()
    missing_values: tuple[str, ...] = ("-", "--", "N/A", "n/a")
    thousands: str | None = None
    date_formats: tuple[str, ...] = ("%Y-%m-%d",)
    skip_rows: Mapping[str, str] = field(default_factory=dict)
    long: Mapping[str, Any] | None = None
    source: str = ""

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any], source: str = "") -> ExportMapping:
        where = f"mapping {source or entry.get('name', '?')}"
        known = {
            "name",
            "title",
            "documentation",
            "header_row",
            "layout",
            "columns",
            "segment_columns",
            "watch_time_per",
            "blank_as_zero",
            "missing_values",
            "thousands",
            "date_formats",
            "skip_rows",
            "long",
        }
        unknown = sorted(set(entry) - known)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(known)}")
        columns_in = entry.get("columns") or {}
        bad_fields = sorted(set(columns_in) - set(FIELDS))
        if bad_fields:
            raise ValueError(f"{where}: unknown field(s) {bad_fields}; fields are {', '.join(FIELDS)}")
        layout = entry.get("layout", "wide")
        if layout not in ("wide", "long"):
            raise ValueError(f"{where}: layout {layout!r} must be 'wide' or 'long'")
        columns = {f: (tuple(v) if isinstance(v, (list, tuple)) else (str(v),)) for f, v in columns_in.items()}
        if layout == "long":
            long = dict(entry.get("long") or {})
            if not {"metric_column", "value_column", "metrics"} <= set(long):
                raise ValueError(f"{where}: a long layout needs long.metric_column, long.value_column, long.metrics")
            bad = sorted(set(long["metrics"].values()) - set(FIELDS))
            if bad:
                raise ValueError(f"{where}: long.metrics maps to unknown field(s) {bad}")
            long_fields = set(long["metrics"].values())
        else:
            long, long_fields = None, set()
        missing = [f for f in REQUIRED_FIELDS if f not in columns and f not in long_fields]
        if missing:
            raise ValueError(f"{where}: no column given for required field(s) {missing}")
        per = entry.get("watch_time_per", "video_plays")
        if per not in ("video_plays", "impressions"):
            raise ValueError(f"{where}: watch_time_per must be video_plays or impressions, got {per!r}")
        return cls(
            name=str(entry.get("name") or Path(source).stem),
            columns=columns,
            title=str(entry.get("title", "")),
            documentation=str(entry.get("documentation", "")),
            header_row=int(entry.get("header_row", 1)),
            layout=layout,
            segment_columns=tuple(entry.get("segment_columns") or ()),
            watch_time_per=per,
            blank_as_zero=tuple(entry.get("blank_as_zero") or ()),
            missing_values=tuple(entry.get("missing_values", cls.missing_values)),
            thousands=entry.get("thousands"),
            date_formats=tuple(entry.get("date_formats") or ("%Y-%m-%d",)),
            skip_rows=dict(entry.get("skip_rows") or {}),
            long=long,
            source=source,
        )

    # -- reading -------------------------------------------------------------------------------
    def read(self, path: str | os.PathLike[str]) -> pd.DataFrame:
        """The export's cells as text (ids never pass through a number parser)."""
        path = Path(path)
        if path.suffix.lower() != ".csv":
            raise ValueError(
                f"the {self.name} mapping reads CSV exports (save the platform's report as CSV), got {path.suffix!r}"
            )
        # utf-8-sig: Ads Manager exports start with a byte-order mark
        return pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            encoding="utf-8-sig",
            skiprows=self.header_row - 1,
            skipinitialspace=True,
        )

    def _resolve(
        self,
        frame: pd.DataFrame,
        fields: Sequence[str],
        required: bool,
        columns: Mapping[str, tuple[str, ...]] | None = None,
    ) -> tuple[dict[str, str], list[str]]:
        found: dict[str, str] = {}
        missing: list[str] = []
        for f in fields:
            names = (columns if columns is not None else self.columns).get(f)
            if not names:
                continue
            hit = next((n for n in names if n in frame.columns), None)
            if hit is not None:
                found[f] = hit
            elif required:
                missing.append(f"{' or '.join(repr(n) for n in names)} ({f})")
        return found, missing

    # -- mapping -------------------------------------------------------------------------------
    def apply(self, raw: pd.DataFrame, source: str) -> MappedExport:
        """Turn the export's rows into results-schema rows (text), listing every bad row."""
        header_lines = self.header_row
        raw, row_numbers = self._drop_skipped_rows(raw)
        columns = dict(self.columns)
        if self.layout == "long":
            raw, row_numbers, errors = self._pivot_long(raw, row_numbers, source, header_lines)
            if errors:
                return MappedExport(pd.DataFrame(), np.array([], dtype=np.int64), errors, header_lines)
            columns.update({f: (f,) for f in (self.long or {})["metrics"].values()})
        found, missing = self._resolve(raw, REQUIRED_FIELDS, required=True, columns=columns)
        absent_segments = [c for c in self.segment_columns if c not in raw.columns]
        if missing or absent_segments:
            parts = missing + [f"{c!r} (segment)" for c in absent_segments]
            error = (
                f"{source}: not a {self.name} export: missing column(s) {', '.join(parts)}; "
                f"the export has {', '.join(repr(c) for c in raw.columns)}"
            )
            return MappedExport(pd.DataFrame(), np.array([], dtype=np.int64), [error], header_lines)
        if len(raw) == 0:
            return MappedExport(
                pd.DataFrame(), row_numbers, [f"{source}: the export has a header but no rows"], header_lines
            )
        optional, _ = self._resolve(raw, OPTIONAL_FIELDS, required=False, columns=columns)
        found.update(optional)
        problems = _RowProblems(source, row_numbers, header_lines)
        out = self._keys(raw, found, problems)
        numbers = {f: self._numbers(raw, f, found[f], problems) for f in _NUMERIC_FIELDS if f in found}
        for f in COUNT_COLUMNS + ("spend",):
            out[f] = _texts(numbers[f])
        out["watch_time_s_sum"] = _texts(np.round(self._watch_time_sum(numbers, found, problems), 6))
        out[SUMSQ_COLUMN] = ""  # platforms report averages only
        for f in VIEW_COLUMNS:
            out[f] = _texts(numbers[f]) if f in numbers else ""
        keep = ~problems.bad
        frame = out.loc[keep, list(KEY_COLUMNS + COUNT_COLUMNS + AMOUNT_COLUMNS) + [SUMSQ_COLUMN, *VIEW_COLUMNS]]
        return MappedExport(frame.reset_index(drop=True), row_numbers[keep], problems.errors, header_lines)

    def _drop_skipped_rows(self, raw: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        """The rows ``skip_rows`` does not drop (totals lines), with their 1-based numbers in the file."""
        raw = raw.copy()
        raw.columns = [str(c).strip() for c in raw.columns]
        row_numbers = np.arange(1, len(raw) + 1)
        keep = np.ones(len(raw), dtype=bool)
        for column, pattern in self.skip_rows.items():
            if column in raw.columns:
                keep &= ~raw[column].astype(str).str.match(pattern).to_numpy()
        return raw.loc[keep].reset_index(drop=True), row_numbers[keep]

    def _keys(self, raw: pd.DataFrame, found: Mapping[str, str], problems: _RowProblems) -> pd.DataFrame:
        """Experiment, video and variant decoded from the ad name, the ISO date and the segment."""
        decoded = []
        for idx, name in enumerate(raw[found["ad_name"]].astype(str)):
            try:
                decoded.append(decode_ad_name(name))
            except AdNameError as exc:
                problems.flag(idx, f"column {found['ad_name']!r}: {exc}")
                decoded.append(("", "", ""))
        out = pd.DataFrame(decoded, columns=["experiment_id", "video_id", "variant"])
        dates = raw[found["date"]].astype(str)
        out["date"] = dates.map({v: self._date(v) for v in dates.unique()}).to_numpy()
        if len(self.segment_columns) == 1:
            out["segment"] = raw[self.segment_columns[0]].astype(str).str.strip().to_numpy()
        elif self.segment_columns:
            out["segment"] = [
                "|".join(f"{c}={raw[c].iat[i].strip()}" for c in self.segment_columns) for i in range(len(raw))
            ]
        else:
            out["segment"] = "all"
        return out

    def _numbers(self, raw: pd.DataFrame, f: str, column: str, problems: _RowProblems) -> np.ndarray:
        """One numeric field's values (NaN where missing), flagging cells that are not valid numbers."""
        # vectorised fast path; cells it cannot take (blank, clock times, bad text) go through
        # _number one by one, which also words the per-row problem
        text = raw[column].astype(str).str.strip()
        cleaned = text.str.replace(self.thousands, "", regex=False) if self.thousands else text
        if f == "spend":
            cleaned = cleaned.str.lstrip("$€£¥")
        values = pd.to_numeric(cleaned, errors="coerce").to_numpy(dtype=float)
        with np.errstate(invalid="ignore"):
            fast = np.isfinite(values) & (values >= 0) & ~text.isin(self.missing_values).to_numpy()
            if f not in ("spend", "avg_watch_time_s"):
                fast &= values == np.floor(values)
        values = np.where(fast, values, np.nan)
        for idx in np.flatnonzero(~fast & ~problems.bad):
            value, problem = self._number(text.iat[idx], f)
            if problem:
                problems.flag(idx, f"column {column!r} ({f}): {problem}")
            else:
                values[idx] = value
        return values

    def _watch_time_sum(
        self, numbers: Mapping[str, np.ndarray], found: Mapping[str, str], problems: _RowProblems
    ) -> np.ndarray:
        """Average watch time x the count it averages over; flags an empty average beside plays."""
        per = numbers.get(self.watch_time_per) if self.watch_time_per == "video_plays" else numbers["impressions"]
        if per is None:  # no play count in this export: the average is over impressions
            per = numbers["impressions"]
        avg = numbers["avg_watch_time_s"]
        # a blank average with no plays is zero watch time, not a missing value
        watch = np.where(np.isnan(avg) & (np.nan_to_num(per) == 0), 0.0, avg * per)
        for idx in np.flatnonzero(~problems.bad & np.isnan(watch)):
            problems.flag(
                idx,
                f"column {found['avg_watch_time_s']!r} (avg_watch_time_s) is empty while "
                f"{int(np.nan_to_num(per[idx]))} plays were counted",
            )
        return watch

    def _pivot_long(
        self, raw: pd.DataFrame, row_numbers: np.ndarray, source: str, header_lines: int
    ) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
        """Long rows (one metric per row) -> one row per ad x date x segment."""
        long = self.long or {}
        metric_col, value_col = long["metric_column"], long["value_column"]
        keys_found, missing = self._resolve(raw, ("ad_name", "date"), required=True)
        need = [c for c in (metric_col, value_col, *self.segment_columns) if c not in raw.columns]
        if missing or need:
            return (
                raw,
                row_numbers,
                [
                    f"{source}: not a {self.name} export: missing column(s) "
                    f"{', '.join(missing + [repr(c) for c in need])}"
                ],
            )
        metrics: Mapping[str, str] = long["metrics"]
        errors: list[str] = []
        keys = [keys_found["ad_name"], keys_found["date"], *self.segment_columns]
        seen: dict[tuple, int] = {}
        records: dict[tuple, dict[str, str]] = {}
        first_row: dict[tuple, int] = {}
        for idx in range(len(raw)):
            where = f"{source}: row {row_numbers[idx]} (line {row_numbers[idx] + header_lines})"
            metric = raw[metric_col].iat[idx].strip()
            if metric not in metrics:
                errors.append(
                    f"{where}: unknown metric {metric!r} in column {metric_col!r}; "
                    f"this mapping knows {', '.join(metrics)}"
                )
                continue
            key = tuple(raw[k].iat[idx].strip() for k in keys)
            if (key, metric) in seen:
                errors.append(
                    f"{where}: metric {metric!r} repeated for {dict(zip(keys, key, strict=False))} "
                    f"(first on row {seen[(key, metric)]})"
                )
                continue
            seen[(key, metric)] = int(row_numbers[idx])
            first_row.setdefault(key, int(row_numbers[idx]))
            records.setdefault(key, dict(zip(keys, key, strict=False)))[metrics[metric]] = raw[value_col].iat[idx]
        wide = pd.DataFrame(list(records.values()), dtype=object).fillna("")
        for k in keys:
            if k not in wide.columns:
                wide[k] = ""
        # the pivoted columns carry the field names themselves
        for f in set(metrics.values()):
            if f not in wide.columns:
                wide[f] = ""
        return wide, np.array([first_row[k] for k in records], dtype=np.int64), errors

    def _date(self, text: str) -> str:
        text = text.strip()
        for fmt in self.date_formats:
            try:
                return _dt.datetime.strptime(text, fmt).date().isoformat()
            except ValueError:
                continue
        return text  # left as is: validation reports it with the expected format

    def _number(self, text: str, f: str) -> tuple[float, str | None]:
        text = text.strip()
        if text in self.missing_values or text == "":
            if f in self.blank_as_zero:
                return 0.0, None
            if f in OPTIONAL_FIELDS or f == "avg_watch_time_s":
                return float("nan"), None
            return float("nan"), f"empty; a {f} count is required (list it under blank_as_zero if blank means 0)"
        if self.thousands:
            text = text.replace(self.thousands, "")
        if f in ("spend",):
            text = text.lstrip("$€£¥")
        clock = _CLOCK.match(text) if f == "avg_watch_time_s" else None
        if clock:
            hours, minutes, seconds = clock.groups()
            return int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds), None
        try:
            value = float(text)
        except ValueError:
            return float("nan"), f"{text!r} is not a number"
        if not np.isfinite(value) or value < 0:
            return float("nan"), f"{text!r} must be a finite number >= 0"
        if f not in ("spend", "avg_watch_time_s") and value != int(value):
            return float("nan"), f"{text!r} must be a whole count"
        return value, None


def _texts(values: np.ndarray) -> np.ndarray:
    """Numbers as exact text for validation: whole numbers without '.0', NaN as ''."""
    values = np.asarray(values, dtype=float)
    out = np.full(len(values), "", dtype=object)
    finite = np.isfinite(values)
    whole = finite & (values == np.floor(values))
    out[whole] = values[whole].astype(np.int64).astype(str)
    other = finite & ~whole
    out[other] = [repr(float(v)) for v in values[other]]
    return out


def shipped_mappings() -> dict[str, Path]:
    """The mappings shipped in ``align_core/experiments/ab_mappings`` by name."""
    folder = resources.files("align_core.experiments.ab_mappings")
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith(".yaml")}


def load_mapping(name_or_path: str | os.PathLike[str]) -> ExportMapping:
    """A shipped mapping by name (``tiktok_split_test``, ``meta_ads_manager``, ``generic_long``) or a YAML path."""
    import yaml

    shipped = shipped_mappings()
    text = str(name_or_path)
    path = shipped.get(text) or Path(text)
    if not path.is_file():
        raise ValueError(
            f"no mapping {text!r}: shipped mappings are {', '.join(sorted(shipped))}, or give a YAML file path"
        )
    try:
        entry = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"mapping {path}: not valid YAML ({exc})") from exc
    if not isinstance(entry, Mapping):
        raise ValueError(f"mapping {path}: expected a mapping of keys")
    return ExportMapping.from_dict(entry, source=str(path))
