"""Which variants may enter an experiment: only those that passed their checks.

The ``variants`` warehouse table carries ``eligible`` and ``exclusion_reason`` (NULL when
eligible) for every rendered variant. A variant is eligible only when ``variant_quality`` checked
exactly that render (same sha256), its manipulation status is ``passed`` and it passed the
stimulus checks (:mod:`align_core.measurement.stimulus_checks`: protected regions unchanged, the ad's text
read the same). Otherwise the reason says why: ``manipulation check failed: ...``, ``not
manipulable: ...``, ``unreachable: ...`` or ``unchecked: ...``, then (joined by ``"; "``) each
failed stimulus check with where it failed (``protected region changed (PSNR vs baseline): frame
12, protected region (x0, y0, x1, y1): ...``, ``protected text changed (OCR): frame 57, text box
...: 'LIMITED OFFER' -> ...``). A/B exports, upload lists and the analysis take eligible variants
only unless the user overrides it explicitly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

__all__ = [
    "eligibility_table",
    "variants_select_sql",
]

STATUSES = ("passed", "failed", "not_manipulable", "unreachable", "unchecked")
UNCHECKED = "unchecked: variant_quality not run"
STALE = "unchecked: variant_quality checked an earlier render of this variant"


def exclusion_reason(status: str, reason: str | None) -> str | None:
    """The reason a variant with this manipulation ``status`` is kept out (None: eligible)."""
    if status not in STATUSES:
        raise ValueError(f"manipulation status {status!r} is not one of {STATUSES}")
    reason = (reason or "").strip()
    if status == "passed":
        return None
    if status == "failed":
        return f"manipulation check failed: {reason}" if reason else "manipulation check failed"
    if status == "not_manipulable":
        return reason if reason.startswith("not manipulable") else f"not manipulable: {reason}"
    if status == "unreachable":
        return reason if reason.startswith("unreachable") else f"unreachable: {reason}"
    return reason if reason.startswith("unchecked") else UNCHECKED


def eligibility_table(
    video_id: str,
    verdicts: pd.DataFrame,
    checked_sha256: Mapping[str, str],
    stimulus_failures: Mapping[str, Sequence[str]] | None = None,
) -> pd.DataFrame:
    """One row per variant: the checked render's sha256, its statuses, ``eligible``, ``exclusion_reason``.

    ``verdicts`` has ``variant``, ``status`` (or only ``passed``) and ``reason`` per variant.
    ``stimulus_failures``: per variant, the stimulus checks it failed, each saying where
    (:meth:`~align_core.measurement.stimulus_checks.StimulusReport.failures`); None when they were not run
    (``stimulus_status`` then says so; eligibility rests on the manipulation check alone).
    """
    rows = []
    for verdict in verdicts.to_dict(orient="records"):
        status = verdict.get("status") or ("passed" if verdict["passed"] else "failed")
        failed_checks = list((stimulus_failures or {}).get(verdict["variant"], ()))
        reasons = [r for r in (exclusion_reason(status, verdict.get("reason")), *failed_checks) if r]
        why = "; ".join(reasons) if reasons else None
        rows.append(
            {
                "video_id": video_id,
                "variant": verdict["variant"],
                "checked_sha256": checked_sha256.get(verdict["variant"]),
                "manipulation_status": status,
                "stimulus_status": "not run"
                if stimulus_failures is None
                else ("failed" if failed_checks else "passed"),
                "eligible": why is None,
                "exclusion_reason": why,
            }
        )
    columns = [
        "video_id",
        "variant",
        "checked_sha256",
        "manipulation_status",
        "stimulus_status",
        "eligible",
        "exclusion_reason",
    ]
    return pd.DataFrame(rows, columns=columns).astype(
        {
            "video_id": "string",
            "variant": "string",
            "checked_sha256": "string",
            "manipulation_status": "string",
            "stimulus_status": "string",
            "eligible": bool,
            "exclusion_reason": "string",
        }
    )


def variants_select_sql(variant_files: str, eligibility_files: str | None) -> str:
    """SQL selecting every rendered variant with ``eligible`` and ``exclusion_reason`` joined in.

    ``variant_files``/``eligibility_files`` are SQL expressions for ``read_parquet`` lists; without
    eligibility files every variant is unchecked.
    """
    if eligibility_files is None:
        return (
            f"SELECT v.*, false AS eligible, '{UNCHECKED}' AS exclusion_reason "
            f"FROM read_parquet({variant_files}, union_by_name = true) v"
        )
    return f"""
        SELECT v.*,
               coalesce(e.checked_sha256 = v.sha256 AND e.eligible, false) AS eligible,
               CASE WHEN e.variant IS NULL THEN '{UNCHECKED}'
                    WHEN e.checked_sha256 IS DISTINCT FROM v.sha256 THEN '{STALE}'
                    ELSE e.exclusion_reason END AS exclusion_reason
        FROM read_parquet({variant_files}, union_by_name = true) v
        LEFT JOIN read_parquet({eligibility_files}, union_by_name = true) e
          ON e.video_id = v.video_id AND e.variant = v.variant
    """
