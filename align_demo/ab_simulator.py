"""The demo's A/B simulator: export rows with planted, known effects (moved out of the core).

Production code never imports this module: the demo's ``demo_ab_export`` asset and the tests
use it to produce an export in the results schema whose true effects are known
(:func:`planted_truth`), so the analysis can be checked against them.

The simulator reads the experiment's variant registry: by default every arm's planted effect
follows from its spec (kind, window, factor; :func:`registry_lifts`), so an eighth variant or a
lab's twelve arms get effects without a table keyed by name; :class:`SimulationEffects` can
still override them by name.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from align_core.inputs.ids import validate_video_id
from align_core.io.atomic import atomic_path
from align_core.stimuli.plans import DEFAULT_VARIANTS, VariantSpec, control_name, parse_variants

__all__ = [
    "SimulatedAB",
    "SimulationEffects",
    "matched_planted_truth",
    "planted_in_videos",
    "planted_truth",
    "registry_lifts",
    "simulate_ab",
    "simulate_ab_export",
    "simulate_ab_rows",
    "simulate_uploaded_ab",
    "simulate_uploaded_export",
    "write_export",
]

DEFAULT_SEGMENTS: tuple[str, ...] = (
    "age=18-24|placement=feed",
    "age=25-34|placement=feed",
    "age=35+|placement=feed",
    "age=18-24|placement=search",
)


#: Relative lift of a x1.5 boost by the window it changes (earlier attention matters more), and
#: of a x0.5 reduction, per metric; other factors scale by log(factor) / log(1.5) (or 0.5).
BOOST_LIFT_AT_1_5: dict[str, dict[str, float]] = {
    "ctr": {"early": 0.12, "middle": 0.07, "late": 0.03, "full": 0.15},
    "cvr": {"early": 0.05, "middle": 0.03, "late": 0.01, "full": 0.06},
    "watch_time": {"early": 0.04, "middle": 0.03, "late": 0.02, "full": 0.05},
}
REDUCTION_LIFT_AT_0_5: dict[str, float] = {"ctr": -0.06, "cvr": -0.03, "watch_time": -0.02}


def spec_lift(spec: VariantSpec, metric: str) -> float:
    """The planted relative lift of one arm, from its spec: zero for control and placebo."""
    if spec.kind == "boost":
        return BOOST_LIFT_AT_1_5[metric][spec.window] * math.log(spec.factor) / math.log(1.5)
    if spec.kind == "reduce":
        return REDUCTION_LIFT_AT_0_5[metric] * math.log(spec.factor) / math.log(0.5)
    return 0.0


def registry_lifts(variants: Sequence[VariantSpec] = DEFAULT_VARIANTS, metric: str = "ctr") -> dict[str, float]:
    """Every arm's planted lift for ``metric``, keyed by name."""
    return {spec.name: spec_lift(spec, metric) for spec in variants}


def _resolve_variants(variants: Sequence[VariantSpec | str]) -> tuple[VariantSpec, ...]:
    """Specs for the arms: names are looked up in the default registry."""
    defaults = {s.name: s for s in DEFAULT_VARIANTS}
    specs = []
    for v in variants:
        if isinstance(v, VariantSpec):
            specs.append(v)
        elif v in defaults:
            specs.append(defaults[v])
        else:
            raise ValueError(f"variant {v!r} is not in the default registry; pass its VariantSpec")
    if not any(s.role == "control" for s in specs):
        return tuple(specs)  # a treatment-only slice (tests of one contrast): no control to check
    return parse_variants(specs)


@dataclass(frozen=True)
class SimulationEffects:
    """The effects a simulated export carries (all lifts relative to baseline).

    For video ``j`` in industry ``k`` and variant ``v`` the per-impression click probability is
    ``p_bj * (1 + ctr_lift[v] * m_k + eta_vj) * exp(ctr_dose_slope * achieved_delta_vj)`` with
    ``p_bj = expit(logit(base_ctr) + u_j)``, ``u_j ~ N(0, video_sd_logit)`` (a video random
    effect, so impressions of one video are correlated and clustering matters),
    ``eta_vj ~ N(0, lift_sd)`` (video-to-video variation of the lift, mean zero; treatments
    only: the control and the placebo have no effect in any video, a sharp null) and
    ``m_k = industry_modifier.get(k, 1)``. Conversions per click follow the same form with
    ``cvr_lift``; watch time per impression has mean ``base_watch_s * w_j * (1 + watch_lift[v]
    * m_k + eta)`` with a lognormal video effect ``w_j`` of mean 1 and per-impression sd
    ``watch_sd_s``. Because ``u_j``, ``w_j`` and ``eta`` are independent of the variant, the
    population (ratio-of-expectations) relative lift of variant ``v`` in industry ``k`` is
    exactly ``lift[v] * m_k`` (without a dose term); :func:`planted_truth` returns the pooled
    and per-industry values, dose term included.
    """

    ctr_lift: Mapping[str, float] | None = None  # None: from each arm's spec (spec_lift)
    cvr_lift: Mapping[str, float] | None = None
    watch_lift: Mapping[str, float] | None = None
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

    def lifts(self, metric: str, variants: Sequence[VariantSpec]) -> dict[str, float]:
        """Planted lift per arm: the override when given (missing names: 0), else from the spec."""
        given = {"ctr": self.ctr_lift, "cvr": self.cvr_lift, "watch_time": self.watch_lift}[metric]
        if given is None:
            return registry_lifts(variants, metric)
        return {s.name: float(given.get(s.name, 0.0)) for s in variants}


def planted_truth(
    videos: pd.DataFrame,
    effects: SimulationEffects,
    achieved_delta: pd.DataFrame | None = None,
    variants: Sequence[VariantSpec | str] = DEFAULT_VARIANTS,
) -> dict[str, Any]:
    """The true effects of a simulation, keyed like the analysis (ctr, cvr, watch_time).

    Every video gets the same expected traffic per arm and, in expectation, the same base
    rates, so the pooled (ratio-of-expectations) relative lift of variant ``v`` is, over
    videos ``j``, ``mean(a_j) - 1`` for CTR with ``a_j = (1 + ctr_lift[v] m_j) exp(slope
    delta_vj)``; ``mean(a_j b_j) / mean(a_j) - 1`` for CVR (conversions per click weight by
    clicks) with ``b_j = 1 + cvr_lift[v] m_j``; and ``mean(1 + watch_lift[v] m_j) - 1`` for
    watch time. Pass the same ``achieved_delta`` given to the simulator when it planted a dose
    term. ``*_by_industry`` restricts the means to one industry's videos. Keys are the
    registry's arms other than its control.
    """
    specs = _resolve_variants(variants)
    control = control_name(specs)
    ctr_l, cvr_l, watch_l = (effects.lifts(m, specs) for m in ("ctr", "cvr", "watch_time"))
    industries = videos["industry"].fillna("unknown").astype(str).to_numpy()
    vids = videos["video_id"].astype(str).to_numpy()
    mod = np.array([effects.industry_modifier.get(k, 1.0) for k in industries])
    lookup = _delta_lookup(achieved_delta)

    def lifts(mask: np.ndarray) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {"ctr": {}, "cvr": {}, "watch_time": {}}
        base_dose = np.exp(effects.ctr_dose_slope * np.array([lookup.get((v, control), 0.0) for v in vids[mask]]))
        for variant in (s.name for s in specs if s.name != control):
            dose = np.exp(effects.ctr_dose_slope * np.array([lookup.get((v, variant), 0.0) for v in vids[mask]]))
            a = (1 + ctr_l[variant] * mod[mask]) * dose
            b = 1 + cvr_l[variant] * mod[mask]
            out["ctr"][variant] = float(a.mean() / base_dose.mean() - 1)
            out["cvr"][variant] = float((a * b).mean() / a.mean() - 1)
            out["watch_time"][variant] = float((1 + watch_l[variant] * mod[mask]).mean() - 1)
        return out

    truth: dict[str, Any] = lifts(np.ones(len(vids), dtype=bool))
    per_industry = {k: lifts(industries == k) for k in sorted(set(industries))}
    truth["ctr_by_industry"] = {k: v["ctr"] for k, v in per_industry.items()}
    truth["cvr_by_industry"] = {k: v["cvr"] for k, v in per_industry.items()}
    truth["ctr_dose_slope_log"] = float(effects.ctr_dose_slope)
    truth["base_ctr"] = effects.base_ctr
    truth["base_cvr"] = effects.base_cvr
    return truth


def matched_planted_truth(
    videos: pd.DataFrame,
    ran: pd.DataFrame,
    effects: SimulationEffects,
    achieved_delta: pd.DataFrame | None = None,
    variants: Sequence[VariantSpec | str] = DEFAULT_VARIANTS,
) -> dict[str, Any]:
    """:func:`planted_truth` of each arm over the videos where it and the control ran.

    ``ran``: (video_id, variant) of the arms that were served (an upload manifest). The analysis
    compares each arm with the control on exactly those videos (matched contrasts), so that is
    the planted value its estimate must recover; industry modifiers and doses make it differ
    from the all-videos value when eligibility left an arm out of some videos.
    """
    specs = _resolve_variants(variants)
    control = control_name(specs)
    truth = planted_truth(videos, effects, achieved_delta, specs)
    served = ran.assign(video_id=ran["video_id"].astype(str))
    with_control = set(served.loc[served["variant"] == control, "video_id"])
    for spec in specs:
        if spec.name == control:
            continue
        mine = set(served.loc[served["variant"] == spec.name, "video_id"]) & with_control
        subset = videos[videos["video_id"].astype(str).isin(mine)]
        if subset.empty:
            continue
        arm_truth = planted_truth(subset, effects, achieved_delta, specs)
        for metric in ("ctr", "cvr", "watch_time"):
            truth[metric][spec.name] = arm_truth[metric][spec.name]
    truth["matched_videos"] = {
        s.name: len(set(served.loc[served["variant"] == s.name, "video_id"]) & with_control)
        for s in specs
        if s.name != control
    }
    return truth


@dataclass(frozen=True)
class SimulatedAB:
    """A simulated export and what it planted.

    ``rows``: the export rows. ``planted``: one row per video x arm with the per-impression
    click probability (``ctr``), conversion probability per click (``cvr``), mean watch time
    (``watch_s``) and expected impressions the rows were drawn from: the effects actually
    planted in these videos (:func:`planted_in_videos`), not their expectation over videos.
    """

    rows: pd.DataFrame
    planted: pd.DataFrame


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
    variants: Sequence[VariantSpec | str] = DEFAULT_VARIANTS,
) -> pd.DataFrame:
    """Export rows (the ingestion format) with planted effects, as a DataFrame.

    ``videos`` has ``video_id`` (string) and ``industry``. ``impressions_per_arm`` is the
    expected impressions per video x variant x day at equal allocation (Poisson, split over
    ``segments`` multinomially); clicks and conversions are binomial given the probabilities
    described on :class:`SimulationEffects`. ``achieved_delta`` (video_id, variant,
    achieved_delta) feeds the dose term. ``variants`` is the experiment's registry (specs, or
    names of default variants). The expected values are :func:`planted_truth`; what was
    planted in these very videos is :func:`simulate_ab`'s ``planted``.
    """
    return simulate_ab(
        videos,
        effects,
        seed=seed,
        days=days,
        segments=segments,
        impressions_per_arm=impressions_per_arm,
        experiment_id=experiment_id,
        start_date=start_date,
        achieved_delta=achieved_delta,
        variants=variants,
    ).rows


def simulate_ab(
    videos: pd.DataFrame,
    effects: SimulationEffects | None = None,
    seed: int = 0,
    days: int = 7,
    segments: Sequence[str] = DEFAULT_SEGMENTS,
    impressions_per_arm: int = 3000,
    experiment_id: str = "demo-exp-1",
    start_date: _dt.date = _dt.date(2026, 11, 1),
    achieved_delta: pd.DataFrame | None = None,
    variants: Sequence[VariantSpec | str] = DEFAULT_VARIANTS,
) -> SimulatedAB:
    """:func:`simulate_ab_rows` with the per-video rates it drew them from (same arguments)."""
    effects = effects or SimulationEffects()
    rng = np.random.default_rng(seed)
    vids = (
        videos["video_id"].astype(str).map(lambda v: validate_video_id(v, where="simulate_ab_export videos")).to_numpy()
    )
    industry = (
        videos["industry"].fillna("unknown").astype(str).to_numpy()
        if "industry" in videos
        else np.full(len(vids), "unknown")
    )
    specs = _resolve_variants(variants)
    names = [s.name for s in specs]
    arms = _ArmSimulator(
        rng=rng,
        effects=effects,
        vids=vids,
        baselines=_VideoBaselines.draw(rng, effects, len(vids)),
        modifier=np.array([effects.industry_modifier.get(k, 1.0) for k in industry]),
        lifts={m: effects.lifts(m, specs) for m in ("ctr", "cvr", "watch_time")},
        control=next((s.name for s in specs if s.role == "control"), None),
        no_effect=frozenset(s.name for s in specs if s.role in ("control", "placebo")),
        shares=dict(effects.planned_shares or {v: 1.0 / len(names) for v in names}),
        n_variants=len(names),
        dates=[start_date + _dt.timedelta(days=d) for d in range(days)],
        segments=segments,
        impressions_per_arm=impressions_per_arm,
        experiment_id=experiment_id,
        delta_lookup=_delta_lookup(achieved_delta),
    )
    rows = pd.concat([arms.rows(variant) for variant in names], ignore_index=True)
    return SimulatedAB(rows, pd.concat([arms.planted[v] for v in names], ignore_index=True))


def planted_in_videos(planted: pd.DataFrame, ran: pd.DataFrame | None = None) -> dict[str, dict[str, float]]:
    """The lifts actually planted in the videos each arm and the control ran in (matched).

    ``planted``: :class:`SimulatedAB`'s per-video rates (with a ``role`` column naming the
    control). ``ran``: (video_id, variant) that were served (the upload manifest); None: every
    video x arm. Each lift is a ratio of expected sums over the matched videos, exactly what the
    matched ratio-of-sums estimates: clicks per impression for CTR, conversions per click for
    CVR, watch seconds per impression for watch time. It includes each video's own deviation of
    the lift (``lift_sd``), which :func:`planted_truth` averages away.
    """
    cells = planted.assign(video_id=planted["video_id"].astype(str))
    if ran is not None:
        served = set(zip(ran["video_id"].astype(str), ran["variant"].astype(str), strict=False))
        cells = cells[[(v, a) in served for v, a in zip(cells["video_id"], cells["variant"], strict=False)]]
    cells = cells.assign(
        clicks=cells["impressions"] * cells["ctr"],
        conversions=cells["impressions"] * cells["ctr"] * cells["cvr"],
        watch=cells["impressions"] * cells["watch_s"],
    )
    control = cells[cells["role"] == "control"].set_index("video_id")
    out: dict[str, dict[str, float]] = {"ctr": {}, "cvr": {}, "watch_time": {}}
    for variant, arm in cells[cells["role"] != "control"].groupby("variant", sort=False):
        arm = arm.set_index("video_id")
        both = arm.index.intersection(control.index)
        if both.empty:
            continue
        a, c = arm.loc[both].sum(numeric_only=True), control.loc[both].sum(numeric_only=True)
        out["ctr"][str(variant)] = float((a["clicks"] / a["impressions"]) / (c["clicks"] / c["impressions"]) - 1)
        out["cvr"][str(variant)] = float((a["conversions"] / a["clicks"]) / (c["conversions"] / c["clicks"]) - 1)
        out["watch_time"][str(variant)] = float((a["watch"] / a["impressions"]) / (c["watch"] / c["impressions"]) - 1)
    return out


def _delta_lookup(achieved_delta: pd.DataFrame | None) -> dict[tuple[str, str], float]:
    """Achieved alignment change by (video_id, variant), for the dose term."""
    lookup: dict[tuple[str, str], float] = {}
    if achieved_delta is not None:
        for vid, var, d in achieved_delta[["video_id", "variant", "achieved_delta"]].itertuples(index=False):
            lookup[(str(vid), str(var))] = float(d)
    return lookup


@dataclass(frozen=True)
class _VideoBaselines:
    """Per-video baseline CTR, CVR (logit-normal video effects) and mean watch time (lognormal, mean 1)."""

    ctr: np.ndarray
    cvr: np.ndarray
    watch_s: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator, effects: SimulationEffects, n: int) -> _VideoBaselines:
        u = rng.normal(0.0, effects.video_sd_logit, n)
        ctr = 1.0 / (1.0 + np.exp(-(math.log(effects.base_ctr / (1 - effects.base_ctr)) + u)))
        u_c = rng.normal(0.0, effects.video_sd_logit, n)
        cvr = 1.0 / (1.0 + np.exp(-(math.log(effects.base_cvr / (1 - effects.base_cvr)) + u_c)))
        sd_w = effects.video_sd_watch
        watch_s = effects.base_watch_s * np.exp(rng.normal(0.0, sd_w, n) - sd_w**2 / 2)
        return cls(ctr, cvr, watch_s)


@dataclass
class _ArmSimulator:
    """Simulates one arm's rows (video x day x segment) at a time, drawing from one shared stream."""

    rng: np.random.Generator
    effects: SimulationEffects
    vids: np.ndarray
    baselines: _VideoBaselines
    modifier: np.ndarray  # industry modifier per video
    lifts: dict[str, dict[str, float]]  # metric -> variant -> planted lift
    control: str | None
    no_effect: frozenset[str]  # control and placebo: no lift in any video (no eta)
    shares: dict[str, float]
    n_variants: int
    dates: list[_dt.date]
    segments: Sequence[str]
    impressions_per_arm: int
    experiment_id: str
    delta_lookup: dict[tuple[str, str], float]
    planted: dict[str, pd.DataFrame] = field(default_factory=dict)  # variant -> the rates it was drawn from

    def rows(self, variant: str) -> pd.DataFrame:
        p, q, w = self._rates(variant)
        lam = self.impressions_per_arm * self.shares[variant] * self.n_variants
        lam *= self.effects.served_share_bias.get(variant, 1.0)
        self.planted[variant] = pd.DataFrame(
            {
                "video_id": self.vids,
                "variant": variant,
                "role": "control" if variant == self.control else "other",
                "ctr": p,
                "cvr": q,
                "watch_s": w,
                "impressions": lam * len(self.dates),
            }
        )
        n_v, n_s = len(self.vids), len(self.segments)
        total = self.rng.poisson(lam, (n_v, len(self.dates)))
        split = self.rng.multinomial(total, np.full(n_s, 1.0 / n_s))
        clicks = self.rng.binomial(split, p[:, None, None])
        conversions = self.rng.binomial(clicks, q[:, None, None])
        wsum, wsq = self._watch_time(split.astype(float), w[:, None, None])
        return self._frame(variant, split, clicks, conversions, wsum, wsq)

    def _rates(self, variant: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per video: click and conversion probability and mean watch time in this arm."""
        n_v, mod, base, effects = len(self.vids), self.modifier, self.baselines, self.effects
        # the lift varies from video to video around its planted mean; an arm without an effect
        # (control, placebo) has none in any video
        # (drawn for the placebo too and zeroed, so every later draw of a seed stays as it was)
        eta = self.rng.normal(0.0, effects.lift_sd, (3, n_v)) if variant != self.control else np.zeros((3, n_v))
        eta = eta * (variant not in self.no_effect)
        dose = np.array([self.delta_lookup.get((v, variant), 0.0) for v in self.vids])
        ctr_l, cvr_l, watch_l = (self.lifts[m][variant] for m in ("ctr", "cvr", "watch_time"))
        p = np.clip(base.ctr * (1 + ctr_l * mod + eta[0]) * np.exp(effects.ctr_dose_slope * dose), 1e-6, 0.999)
        q = np.clip(base.cvr * (1 + cvr_l * mod + eta[1]), 1e-6, 0.999)
        w = np.maximum(base.watch_s * (1 + watch_l * mod + eta[2]), 0.1)
        return p, q, w

    def _watch_time(self, n: np.ndarray, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sum and sum of squares of the watch time of ``n`` impressions with mean ``mu``.

        The sum is ~normal, and the sum of squares follows from the sample variance (chi-square
        with n-1 df) exactly as for normal draws: sumsq = sum^2 / n + (n - 1) * s2.
        """
        sd = self.effects.watch_sd_s
        wsum = np.round(np.maximum(self.rng.normal(n * mu, np.sqrt(np.maximum(n, 1)) * sd), 0.0) * (n > 0), 3)
        s2 = sd**2 * self.rng.chisquare(np.maximum(n - 1, 1)) / np.maximum(n - 1, 1)
        # rounded up so the written sums still satisfy n * sumsq >= sum^2 after rounding
        wsq = np.ceil(np.where(n > 0, wsum**2 / np.maximum(n, 1) + np.maximum(n - 1, 0) * s2, 0.0) * 1000) / 1000
        return wsum, wsq

    def _frame(
        self,
        variant: str,
        split: np.ndarray,
        clicks: np.ndarray,
        conversions: np.ndarray,
        wsum: np.ndarray,
        wsq: np.ndarray,
    ) -> pd.DataFrame:
        """The arm's export rows, video x day x segment in that order."""
        n_v, days, n_s = split.shape
        idx_v, idx_d, idx_s = np.meshgrid(np.arange(n_v), np.arange(days), np.arange(n_s), indexing="ij")
        return pd.DataFrame(
            {
                "experiment_id": self.experiment_id,
                "video_id": self.vids[idx_v.ravel()],
                "variant": variant,
                "date": [self.dates[i].isoformat() for i in idx_d.ravel()],
                "segment": np.asarray(self.segments, dtype=object)[idx_s.ravel()],
                "impressions": split.ravel(),
                "clicks": clicks.ravel(),
                "conversions": conversions.ravel(),
                "spend": np.round(split.ravel() * self.effects.cost_per_mille / 1000.0, 4),
                "watch_time_s_sum": wsum.ravel(),
                "watch_time_s_sumsq": wsq.ravel(),
                "planned_share": self.shares[variant],
            }
        )


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
    variants: Sequence[VariantSpec | str] = DEFAULT_VARIANTS,
) -> Path:
    """Write :func:`simulate_ab_rows` as an export (CSV or Parquet by suffix) for the inbox.

    The effects it carries are documented on :class:`SimulationEffects`; their true values
    are :func:`planted_truth` ``(videos, effects)``. The file is written under a hidden
    temporary name and renamed into place, so an inbox scan never sees half a file.
    """
    path = Path(path)
    out = simulate_ab_rows(
        videos,
        effects,
        seed=seed,
        days=days,
        segments=segments,
        impressions_per_arm=impressions_per_arm,
        experiment_id=experiment_id,
        start_date=start_date,
        achieved_delta=achieved_delta,
        variants=variants,
    )
    with atomic_path(path) as tmp:  # tmp is a hidden sibling: scan_inbox skips it
        if path.suffix.lower() == ".parquet":
            out.to_parquet(tmp, index=False)
        else:
            out.to_csv(tmp, index=False)
    return path


def simulate_uploaded_ab(
    videos: pd.DataFrame,
    manifest: pd.DataFrame,
    effects: SimulationEffects | None = None,
    variants: Sequence[VariantSpec | str] = DEFAULT_VARIANTS,
    **kwargs: Any,
) -> SimulatedAB:
    """The results of the ads an upload manifest lists (eligible variants only), and their rates.

    Rows are simulated for every video x arm of the registry and kept only where the manifest
    has that (video, variant): an ineligible variant was never uploaded, so it has no results.
    ``kwargs`` go to :func:`simulate_ab` (``experiment_id`` defaults to the manifest's).
    """
    if manifest.empty:
        raise ValueError("the upload manifest lists no ads: no eligible variant to simulate results for")
    kwargs.setdefault("experiment_id", str(manifest["experiment_id"].iat[0]))
    tested = videos[videos["video_id"].astype(str).isin(set(manifest["video_id"].astype(str)))]
    sim = simulate_ab(tested, effects, variants=variants, **kwargs)
    uploaded = set(zip(manifest["video_id"].astype(str), manifest["variant"], strict=False))

    def served(frame: pd.DataFrame) -> pd.DataFrame:
        keep = [(v, a) in uploaded for v, a in zip(frame["video_id"], frame["variant"], strict=False)]
        return frame[keep].reset_index(drop=True)

    rows = served(sim.rows).assign(simulated="true")  # labelled in the warehouse, the tables and the report
    return SimulatedAB(rows, served(sim.planted))


def write_export(rows: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write export rows as CSV under a hidden temporary name and rename it into place."""
    path = Path(path)
    with atomic_path(path) as tmp:  # tmp is a hidden sibling: scan_inbox skips it
        rows.to_csv(tmp, index=False)
    return path


def simulate_uploaded_export(
    videos: pd.DataFrame,
    manifest: pd.DataFrame,
    path: str | os.PathLike[str],
    effects: SimulationEffects | None = None,
    variants: Sequence[VariantSpec | str] = DEFAULT_VARIANTS,
    **kwargs: Any,
) -> Path:
    """:func:`simulate_uploaded_ab`'s rows written atomically as a CSV export."""
    return write_export(simulate_uploaded_ab(videos, manifest, effects, variants, **kwargs).rows, path)
