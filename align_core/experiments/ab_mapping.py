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
      ad_name, date, impressions, clicks, conversions, spend, avg_watch_time_s  (required; ad_name
      unless the three keys below come from columns, a field under not_reported needs none)
      video_plays, views_2s, views_6s, views_p25, views_p50, views_p75, views_p100 (optional)
      experiment_id, video_id, variant   (instead of, or besides, the ad name: a column each)
      ad_name: {column: "Ad name", template: "{experiment}__{video}__{variant}"}   (another naming scheme)
    not_reported: [avg_watch_time_s]  # fields the source does not report: stored as NULL, never invented
    conversions_may_exceed_clicks: false   # true: conversions include view-through ones
    delimiter: auto                   # ',' ';' "\t" '|', or auto (sniffed from the header and first rows)
    decimal: auto                     # '.' or ',' (a decimal comma), or auto
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

A file must write its dates one way: a mapping may accept several formats (``%Y-%m-%d`` and
``%m/%d/%Y``), but a file mixing day-month orders is refused with the odd rows named, since
``03/11/2026`` in an ISO file could be either 11 March or 3 November.

Every problem is reported per row with the file's row and line number and the export column;
a row whose ad name cannot be decoded is reported for that reason only (its other cells are
not checked against a video and variant it does not have).
"""

from __future__ import annotations

import datetime as _dt
import io
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from align_core.experiments.ab_results import (
    AMOUNT_COLUMNS,
    COUNT_COLUMNS,
    KEY_COLUMNS,
    NULLABLE_COLUMNS,
    SUMSQ_COLUMN,
    VIEW_COLUMNS,
)
from align_core.experiments.export_text import (
    DELIMITERS,
    decode_export_bytes,
    looks_like_decimal_comma,
    parse_count,
    sniff_delimiter,
)
from align_core.inputs.ids import SCIENTIFIC_ID, InvalidVideoIdError, validate_video_id

__all__ = [
    "AD_NAME_FORMAT",
    "AdNameError",
    "AdNameTemplate",
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
#: Key fields that may come from their own column instead of the ad name.
KEY_FIELDS: tuple[str, ...] = ("experiment_id", "video_id", "variant")
FIELDS: tuple[str, ...] = REQUIRED_FIELDS + OPTIONAL_FIELDS + KEY_FIELDS
#: Fields a mapping may declare not reported (NULL in the warehouse, never a made-up 0).
NOT_REPORTABLE: tuple[str, ...] = ("conversions", "spend", "avg_watch_time_s") + VIEW_COLUMNS
_COUNT_FIELDS: tuple[str, ...] = ("impressions", "clicks", "conversions") + VIEW_COLUMNS
_AMOUNT_FIELDS: tuple[str, ...] = ("spend", "avg_watch_time_s")
_TEMPLATE_KEYS: dict[str, str] = {"experiment": "experiment_id", "video": "video_id", "variant": "variant"}
_DATE_PARTS = re.compile(r"%[YymdbBj]")
_GROUPED_DOT = re.compile(r"^[+-]?\d{1,3}(\.\d{3})+(,\d*)?$")
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
class AdNameTemplate:
    """An ad-naming scheme other than the default, e.g. ``{experiment}_{video}_{variant}``.

    Placeholders are ``{experiment}``, ``{video}``, ``{variant}`` (each at most once) and ``{_}``
    for a part to ignore; the rest is literal text. A name the template can split in more than
    one way (an id holding the separator) is refused as ambiguous, never split by guess.
    """

    template: str

    def __post_init__(self) -> None:
        names = re.findall(r"\{([^{}]*)\}", self.template)
        unknown = sorted(set(names) - set(_TEMPLATE_KEYS) - {"_"})
        repeated = sorted({n for n in names if n != "_" and names.count(n) > 1})
        if unknown or repeated or not set(names) & set(_TEMPLATE_KEYS):
            raise ValueError(
                f"ad name template {self.template!r}: use {{experiment}}, {{video}}, {{variant}} (each at most "
                f"once, at least one) and {{_}} for ignored text; unknown {unknown}, repeated {repeated}"
            )

    @property
    def keys(self) -> tuple[str, ...]:
        """The key fields (experiment_id, video_id, variant) the template supplies."""
        return tuple(_TEMPLATE_KEYS[n] for n in re.findall(r"\{([^{}]*)\}", self.template) if n != "_")

    def _pattern(self, quantifier: str) -> re.Pattern[str]:
        parts = re.split(r"(\{[^{}]*\})", self.template)
        regex = "".join(
            (f"(?P<{p[1:-1]}>.+{quantifier})" if p != "{_}" else f"(?:.*{quantifier})")
            if p.startswith("{")
            else re.escape(p)
            for p in parts
        )
        return re.compile(f"^{regex}$")

    def decode(self, text: str) -> dict[str, str]:
        """Key field -> value for one ad name, or :class:`AdNameError` saying why."""
        name = str(text).strip()
        lazy, greedy = self._pattern("?").match(name), self._pattern("").match(name)
        if lazy is None or greedy is None:
            raise AdNameError(f"ad name {name!r} does not match the mapping's template {self.template!r}")
        if lazy.groupdict() != greedy.groupdict():
            raise AdNameError(
                f"ad name {name!r} splits more than one way under the template {self.template!r} "
                f"({lazy.groupdict()} or {greedy.groupdict()}): an id holds the separator; use another separator"
            )
        out = {}
        for key, value in lazy.groupdict().items():
            field_name = _TEMPLATE_KEYS[key]
            try:
                out[field_name] = validate_video_id(value)
            except InvalidVideoIdError:
                why = (
                    "is in scientific notation; the original digits were lost"
                    if SCIENTIFIC_ID.match(value.strip())
                    else "may hold only letters, digits, '-' and '_'"
                )
                raise AdNameError(f"ad name {name!r}: its {field_name} {value!r} {why}") from None
        return out


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

    def flag(self, idx: int | np.integer[Any], text: str) -> None:
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
    ad_name_template: AdNameTemplate | None = None
    not_reported: tuple[str, ...] = ()
    conversions_may_exceed_clicks: bool = False
    delimiter: str = "auto"
    decimal: str = "auto"

    _KEYS = frozenset(
        {
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
            "not_reported",
            "conversions_may_exceed_clicks",
            "delimiter",
            "decimal",
        }
    )

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any], source: str = "") -> ExportMapping:
        where = f"mapping {source or entry.get('name', '?')}"
        unknown = sorted(set(entry) - cls._KEYS)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(cls._KEYS)}")
        columns, template = _parse_columns(entry.get("columns") or {}, where)
        layout = entry.get("layout", "wide")
        if layout not in ("wide", "long"):
            raise ValueError(f"{where}: layout {layout!r} must be 'wide' or 'long'")
        long, long_fields = _parse_long(entry, where) if layout == "long" else (None, set())
        if long is not None and "ad_name" not in columns:
            raise ValueError(f"{where}: a long layout keys its rows by columns.ad_name")
        not_reported = tuple(entry.get("not_reported") or ())
        _check_sources(columns, template, long_fields, not_reported, where)
        per = entry.get("watch_time_per", "video_plays")
        if per not in ("video_plays", "impressions"):
            raise ValueError(f"{where}: watch_time_per must be video_plays or impressions, got {per!r}")
        delimiter, decimal = str(entry.get("delimiter", "auto")), str(entry.get("decimal", "auto"))
        if delimiter not in ("auto", *DELIMITERS) or decimal not in ("auto", ".", ","):
            raise ValueError(f"{where}: delimiter must be auto or one of {DELIMITERS}, decimal auto, '.' or ','")
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
            ad_name_template=template,
            not_reported=not_reported,
            conversions_may_exceed_clicks=bool(entry.get("conversions_may_exceed_clicks", False)),
            delimiter=delimiter,
            decimal=decimal,
        )

    @property
    def not_reported_columns(self) -> frozenset[str]:
        """The results-schema columns this source leaves NULL (its not-reported fields)."""
        schema = {"avg_watch_time_s": "watch_time_s_sum"}
        return frozenset(schema.get(f, f) for f in self.not_reported) & frozenset(NULLABLE_COLUMNS)

    # -- reading -------------------------------------------------------------------------------
    def read(self, path: str | os.PathLike[str]) -> pd.DataFrame:
        """The export's cells as text (ids never pass through a number parser).

        The text is decoded by its byte-order mark (UTF-8, UTF-16), else as UTF-8, else as
        Windows-1252, else refused; the delimiter is the mapping's or sniffed from the header
        and the first rows (kept in ``frame.attrs["delimiter"]``).
        """
        path = Path(path)
        if path.suffix.lower() != ".csv":
            raise ValueError(
                f"the {self.name} mapping reads CSV exports (save the platform's report as CSV), got {path.suffix!r}"
            )
        text, _encoding = decode_export_bytes(path.read_bytes(), path.name)
        head = text.splitlines()[self.header_row - 1 : self.header_row + 20]
        delimiter = sniff_delimiter(head) if self.delimiter == "auto" else self.delimiter
        frame = pd.read_csv(
            io.StringIO(text),
            sep=delimiter,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skiprows=self.header_row - 1,
            skipinitialspace=True,
        )
        frame.attrs["delimiter"] = delimiter
        return frame

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
        found, missing = self._resolve(raw, REQUIRED_FIELDS + KEY_FIELDS, required=True, columns=columns)
        absent_segments = [c for c in self.segment_columns if c not in raw.columns]
        if missing or absent_segments:
            parts = missing + [f"{c!r} (segment)" for c in absent_segments]
            error = (
                f"{source}: not a {self.name} export: missing column(s) {', '.join(parts)}; "
                f"the export has {', '.join(repr(c) for c in raw.columns)}{_delimiter_hint(raw)}"
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
        numbers = _NumberReader(self, self._decimal_of(raw, found), problems)
        for f in _COUNT_FIELDS:
            out[f] = numbers.counts(raw, f, found[f]) if f in found else ""
        for f in _AMOUNT_FIELDS:
            if f in found:
                numbers.amounts(raw, f, found[f])
        out["spend"] = _texts(numbers.values["spend"]) if "spend" in found else ""
        if "avg_watch_time_s" in found:
            out["watch_time_s_sum"] = _texts(np.round(self._watch_time_sum(numbers.values, found, problems), 6))
        else:  # not reported: NULL, and no "empty while plays were counted" check
            out["watch_time_s_sum"] = ""
        out[SUMSQ_COLUMN] = ""  # platforms report averages only
        keep = ~problems.bad
        frame = out.loc[keep, list(KEY_COLUMNS + COUNT_COLUMNS + AMOUNT_COLUMNS) + [SUMSQ_COLUMN, *VIEW_COLUMNS]]
        return MappedExport(frame.reset_index(drop=True), row_numbers[keep], problems.errors, header_lines)

    def _decimal_of(self, raw: pd.DataFrame, found: Mapping[str, str]) -> str:
        """The decimal mark: the mapping's, or ',' when the thousands mark is not ',' and a number
        cell in the first rows is written with a decimal comma (``12,50``)."""
        if self.decimal != "auto":
            return self.decimal
        if self.thousands == "," or raw.attrs.get("delimiter", ",") == ",":
            return "."
        cells = [c for f in _AMOUNT_FIELDS + _COUNT_FIELDS if f in found for c in raw[found[f]].head(200)]
        return "," if looks_like_decimal_comma(cells) else "."

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
        """Experiment, video and variant (from the ad name and/or their columns), the ISO date and the segment."""
        out = pd.DataFrame({k: np.full(len(raw), "", dtype=object) for k in KEY_FIELDS})
        if "ad_name" in found:
            template = self.ad_name_template
            for idx, name in enumerate(raw[found["ad_name"]].astype(str)):
                try:
                    keys = (
                        template.decode(name) if template else dict(zip(KEY_FIELDS, decode_ad_name(name), strict=True))
                    )
                except AdNameError as exc:
                    problems.flag(idx, f"column {found['ad_name']!r}: {exc}")
                    continue
                for key, value in keys.items():
                    out.iat[idx, KEY_FIELDS.index(key)] = value
        for key in KEY_FIELDS:
            if key in found:
                self._key_column(raw[found[key]], key, found[key], out, problems)
        out["date"] = self._dates(raw[found["date"]].astype(str), found["date"], problems)
        if len(self.segment_columns) == 1:
            out["segment"] = raw[self.segment_columns[0]].astype(str).str.strip().to_numpy()
        elif self.segment_columns:
            out["segment"] = [
                "|".join(f"{c}={raw[c].iat[i].strip()}" for c in self.segment_columns) for i in range(len(raw))
            ]
        else:
            out["segment"] = "all"
        return out

    @staticmethod
    def _key_column(values: pd.Series, key: str, column: str, out: pd.DataFrame, problems: _RowProblems) -> None:
        """A key field read from its own column (ids as text, checked like the ad name's parts)."""
        for idx, value in enumerate(values.astype(str)):
            if problems.bad[idx]:
                continue
            try:
                out.iat[idx, KEY_FIELDS.index(key)] = validate_video_id(value, where=f"column {column!r} ({key})")
            except InvalidVideoIdError as exc:
                problems.flag(idx, str(exc).replace("video id", key, 1))

    def _dates(self, texts: pd.Series, column: str, problems: _RowProblems) -> np.ndarray:
        """ISO dates; a file mixing day-month orders gets its minority rows flagged, not re-dated."""
        parsed = {v: self._date(v) for v in texts.unique()}
        orders = texts.map({v: order for v, (_, order) in parsed.items()})
        known = orders[orders != ""]
        if known.nunique() > 1:
            usual = known.value_counts().index[0]
            for idx in np.flatnonzero((orders != "").to_numpy() & (orders != usual).to_numpy()):
                problems.flag(
                    idx,
                    f"column {column!r}: date {texts.iat[idx].strip()!r} is written {_order_name(orders.iat[idx])} "
                    f"while the file's other dates are {_order_name(usual)} ({int((orders == usual).sum())} rows); "
                    "a file must use one date format (day and month could be swapped)",
                )
        return texts.map({v: iso for v, (iso, _) in parsed.items()}).to_numpy()

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
                f"{int(np.nan_to_num(per[idx]))} plays were counted (if the source never reports it, "
                "list avg_watch_time_s under not_reported)",
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

    def _date(self, text: str) -> tuple[str, str]:
        """(ISO date, the format's day-month-year order) or (the text as is, '') when no format fits."""
        text = text.strip()
        for fmt in self.date_formats:
            try:
                return _dt.datetime.strptime(text, fmt).date().isoformat(), "".join(_DATE_PARTS.findall(fmt))
            except ValueError:
                continue
        return text, ""  # left as is: validation reports it with the expected format


class _NumberReader:
    """One export's numbers: counts exact (as text, never through a float), amounts as float.

    ``values[f]`` holds every field read as float (NaN: missing or bad) for the watch-time sum.
    """

    def __init__(self, mapping: ExportMapping, decimal: str, problems: _RowProblems) -> None:
        self.mapping, self.decimal, self.problems = mapping, decimal, problems
        self.values: dict[str, np.ndarray] = {}

    def counts(self, raw: pd.DataFrame, f: str, column: str) -> np.ndarray:
        """A count field's cells as exact integer text ('' where not reported), flagging bad ones."""
        texts = raw[column].astype(str).str.strip()
        out = np.full(len(texts), "", dtype=object)
        values = np.full(len(texts), np.nan)
        plain = texts.str.fullmatch(r"\d{1,15}").to_numpy()  # exact in a float too: the fast path
        out[plain] = texts[plain].str.lstrip("0").replace("", "0").to_numpy()
        values[plain] = texts[plain].astype(float).to_numpy()
        for idx in np.flatnonzero(~plain & ~self.problems.bad):
            clean, problem = self._clean(texts.iat[idx], f)
            count = None
            if problem is None and clean is not None:
                count, problem = parse_count(clean)
            if problem is not None:
                self.problems.flag(idx, f"column {column!r} ({f}): {problem}{self._decimal_hint(texts.iat[idx])}")
            elif count is not None:
                out[idx], values[idx] = str(count), float(count)
        self.values[f] = values
        return out

    def amounts(self, raw: pd.DataFrame, f: str, column: str) -> None:
        """An amount field (spend, average watch time) as float in ``values[f]``, flagging bad cells."""
        texts = raw[column].astype(str).str.strip()
        values = np.full(len(texts), np.nan)
        if self.decimal == "." and not self.mapping.thousands:
            fast = pd.to_numeric(texts.str.lstrip("$€£¥") if f == "spend" else texts, errors="coerce").to_numpy()
            with np.errstate(invalid="ignore"):
                ok = np.isfinite(fast) & (fast >= 0) & ~texts.isin(self.mapping.missing_values).to_numpy()
            values[ok] = fast[ok]
        else:
            ok = np.zeros(len(texts), dtype=bool)
        for idx in np.flatnonzero(~ok & ~self.problems.bad):
            value, problem = self._amount(texts.iat[idx], f)
            if problem is not None:
                self.problems.flag(idx, f"column {column!r} ({f}): {problem}{self._decimal_hint(texts.iat[idx])}")
            values[idx] = value
        self.values[f] = values

    def _amount(self, text: str, f: str) -> tuple[float, str | None]:
        clean, problem = self._clean(text, f)
        if problem is not None or clean is None:
            return float("nan"), problem
        clock = _CLOCK.match(clean) if f == "avg_watch_time_s" else None
        if clock:
            hours, minutes, seconds = clock.groups()
            return int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds), None
        try:
            value = float(clean)
        except ValueError:
            return float("nan"), f"{text!r} is not a number"
        if not np.isfinite(value) or value < 0:
            return float("nan"), f"{text!r} must be a finite number >= 0"
        return value, None

    def _clean(self, text: str, f: str) -> tuple[str | None, str | None]:
        """(the number's text with marks normalised, or None when missing; a problem or None)."""
        mapping = self.mapping
        if text in mapping.missing_values or text == "":
            if f in mapping.blank_as_zero:
                return "0", None
            if f in OPTIONAL_FIELDS or f == "avg_watch_time_s":
                return None, None
            return None, (
                f"empty; a {f} value is required (list it under blank_as_zero if blank means 0, "
                "or under not_reported if the source never reports it)"
            )
        if f == "spend":
            text = text.lstrip("$€£¥").strip()
        if self.decimal != ",":
            return (text.replace(mapping.thousands, "") if mapping.thousands else text), None
        thousands = mapping.thousands or "."
        if thousands == "." and "." in text and not _GROUPED_DOT.match(text):
            return None, f"{text!r} has a '.' that is no digit grouping, but this file writes decimals with ','"
        return text.replace(thousands, "").replace(",", "."), None

    def _decimal_hint(self, text: str) -> str:
        if self.decimal == "." and looks_like_decimal_comma([text]):
            return "; it looks like a decimal comma: set decimal: ',' in the mapping (or auto)"
        if self.decimal == "." and not self.mapping.thousands and _GROUPED_DOT.match(text):
            return "; it looks like '.' digit grouping (a decimal-comma locale): set decimal: ',' in the mapping"
        return ""


def _delimiter_hint(raw: pd.DataFrame) -> str:
    """Why the columns may be missing: the header holds another delimiter inside its names."""
    used = raw.attrs.get("delimiter", ",")
    header = [str(c) for c in raw.columns]
    inside = {d: sum(c.count(d) for c in header) for d in DELIMITERS if d != used}
    best = max(inside, key=lambda d: inside[d])
    if inside[best] == 0:
        return ""
    return (
        f"; the column names hold {best!r}: the file looks {best!r}-separated, not {used!r}; "
        f"set delimiter: {best!r} in the mapping (or auto)"
    )


def _order_name(order: str) -> str:
    """'Ymd' -> 'year-month-day': a date format's order of parts, in words."""
    words = {"Y": "year", "y": "year", "m": "month", "b": "month", "B": "month", "d": "day", "j": "day-of-year"}
    return "-".join(words[c] for c in order.replace("%", "")) + " order"


def _parse_columns(
    columns_in: Mapping[str, Any], where: str
) -> tuple[dict[str, tuple[str, ...]], AdNameTemplate | None]:
    """Field -> candidate export columns, and the ad-name template when ``ad_name`` gives one."""
    bad_fields = sorted(set(columns_in) - set(FIELDS))
    if bad_fields:
        raise ValueError(f"{where}: unknown field(s) {bad_fields}; fields are {', '.join(FIELDS)}")
    columns: dict[str, tuple[str, ...]] = {}
    template = None
    for name, value in columns_in.items():
        if isinstance(value, Mapping):
            if name != "ad_name" or set(value) - {"column", "template"} or "column" not in value:
                raise ValueError(f"{where}: only ad_name takes {{column: ..., template: ...}}, got {name}: {value}")
            if "template" in value:
                try:
                    template = AdNameTemplate(str(value["template"]))
                except ValueError as exc:
                    raise ValueError(f"{where}: {exc}") from None
            value = value["column"]
        columns[name] = tuple(str(v) for v in value) if isinstance(value, (list, tuple)) else (str(value),)
    return columns, template


def _parse_long(entry: Mapping[str, Any], where: str) -> tuple[dict[str, Any], set[str]]:
    long = dict(entry.get("long") or {})
    if not {"metric_column", "value_column", "metrics"} <= set(long):
        raise ValueError(f"{where}: a long layout needs long.metric_column, long.value_column, long.metrics")
    bad = sorted(set(long["metrics"].values()) - set(FIELDS))
    if bad:
        raise ValueError(f"{where}: long.metrics maps to unknown field(s) {bad}")
    return long, set(long["metrics"].values())


def _check_sources(
    columns: Mapping[str, tuple[str, ...]],
    template: AdNameTemplate | None,
    long_fields: set[str],
    not_reported: Sequence[str],
    where: str,
) -> None:
    """Every required field has a source, exactly one for each key, none for a not-reported field."""
    bad = sorted(set(not_reported) - set(NOT_REPORTABLE))
    if bad:
        raise ValueError(f"{where}: not_reported may list {', '.join(NOT_REPORTABLE)}; not {bad}")
    both = sorted(set(not_reported) & (set(columns) | long_fields))
    if both:
        raise ValueError(f"{where}: {both} declared not_reported and also given a column")
    from_name = (template.keys if template else KEY_FIELDS) if "ad_name" in columns else ()
    for key in KEY_FIELDS:
        sources = (key in from_name) + (key in columns)
        if sources != 1:
            raise ValueError(
                f"{where}: {key} must come from exactly one place (the ad name"
                f"{' template' if template else ''} or columns.{key}), found {sources}"
            )
    needed = [f for f in REQUIRED_FIELDS if f != "ad_name" and f not in not_reported]
    missing = [f for f in needed if f not in columns and f not in long_fields]
    if missing:
        raise ValueError(f"{where}: no column given for required field(s) {missing} (or list them under not_reported)")


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
