"""One experiment's config: its arms (the variant registry), allocation, design and plan inputs.

The config is the single place an experiment's variants are listed. It is written as YAML by a
lab (or built from :data:`~align_core.stimuli.plans.DEFAULT_VARIANTS`) and registered in the
warehouse (``experiments``, ``experiment_arms``, ``experiment_variants``) before results
arrive; export validation, the analysis, the upload manifest and the pre-registered plan read
the registered arms back from there.

Example (``experiment.yaml``)::

    experiment_id: spring-test
    name: Spring creatives, timing of the product boost
    variants:                      # omitted: the seven default variants
      - {name: baseline, window: none, factor: 1, kind: identity, role: control}
      - {name: early_boost, window: early, factor: 1.5, kind: boost}
      - {name: placebo, window: full, factor: 1.5, kind: placebo}
    planned_shares: {baseline: 0.5, early_boost: 0.25, placebo: 0.25}   # omitted: equal
    design: paired                 # paired (every video in every arm) or unpaired
    primary_metric: ctr
    alpha: 0.05
    power: 0.8
    planned_videos: 12
    planned_impressions_per_arm: 200000
    planned_days: 14
    expected_base_ctr: 0.02
    expected_icc: 0.002
    stopping_rule: fixed horizon ...
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from align_core.experiments.experiments_table import record_experiment, save_experiment_file
from align_core.inputs.ids import validate_video_id
from align_core.io.warehouse import read_connection, table_exists, transaction, write_connection
from align_core.stimuli.plans import DEFAULT_VARIANTS, VariantSpec, control_name, load_variant_config, parse_variants

__all__ = [
    "ExperimentConfig",
    "ensure_registry_table",
    "load_experiment_config",
    "register_experiment_config",
    "registered_configs",
    "registered_variants",
    "variants_for",
]

DESIGNS: tuple[str, ...] = ("paired", "unpaired")
METRICS: tuple[str, ...] = ("ctr", "cvr", "watch_time")
DEFAULT_STOPPING_RULE = (
    "fixed horizon: results are analysed once, after the planned days have run; no interim looks, "
    "no early stop for efficacy (an early stop is reported as a deviation)"
)

EXPERIMENT_VARIANTS_DDL = """
CREATE TABLE IF NOT EXISTS experiment_variants (
    experiment_id VARCHAR NOT NULL,
    variant VARCHAR NOT NULL,
    position INTEGER NOT NULL,
    "window" VARCHAR NOT NULL,
    factor DOUBLE NOT NULL,
    kind VARCHAR NOT NULL,
    role VARCHAR NOT NULL,
    PRIMARY KEY (experiment_id, variant)
)
"""
CONFIGS_DDL = """
CREATE TABLE IF NOT EXISTS experiment_configs (
    experiment_id VARCHAR PRIMARY KEY,
    design VARCHAR NOT NULL,
    primary_metric VARCHAR NOT NULL,
    alpha DOUBLE NOT NULL,
    config_json VARCHAR NOT NULL
)
"""


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything decided before an experiment runs (arms, allocation, design, plan inputs)."""

    experiment_id: str
    variants: tuple[VariantSpec, ...] = DEFAULT_VARIANTS
    name: str | None = None
    planned_shares: Mapping[str, float] | None = None
    design: str = "paired"
    primary_metric: str = "ctr"
    secondary_metrics: tuple[str, ...] = ("cvr", "watch_time")
    alpha: float = 0.05
    power: float = 0.8
    planned_videos: int | None = None
    planned_impressions_per_arm: float | None = None
    planned_days: int | None = None
    start_date: _dt.date | None = None
    expected_base_ctr: float = 0.02
    expected_icc: float = 0.0
    stopping_rule: str = DEFAULT_STOPPING_RULE
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_video_id(self.experiment_id, where="experiment_id")
        object.__setattr__(self, "variants", parse_variants(self.variants))
        names = [s.name for s in self.variants]
        shares = dict(self.planned_shares or {n: 1.0 / len(names) for n in names})
        unknown = sorted(set(shares) - set(names))
        if unknown:
            raise ValueError(f"experiment {self.experiment_id!r}: planned shares name unknown variant(s) {unknown}")
        missing = sorted(set(names) - set(shares))
        if missing:
            raise ValueError(f"experiment {self.experiment_id!r}: no planned share for {missing}")
        if abs(sum(shares.values()) - 1) > 1e-6 or any(v <= 0 for v in shares.values()):
            raise ValueError(
                f"experiment {self.experiment_id!r}: planned shares must be positive and sum to 1, got {shares}"
            )
        object.__setattr__(self, "planned_shares", {n: float(shares[n]) for n in names})
        if self.design not in DESIGNS:
            raise ValueError(f"experiment {self.experiment_id!r}: design {self.design!r} is not one of {DESIGNS}")
        for metric in (self.primary_metric, *self.secondary_metrics):
            if metric not in METRICS:
                raise ValueError(f"experiment {self.experiment_id!r}: metric {metric!r} is not one of {METRICS}")
        if not 0 < self.alpha < 1 or not 0 < self.power < 1:
            raise ValueError(f"experiment {self.experiment_id!r}: alpha and power must lie in (0, 1)")

    @property
    def control(self) -> str:
        return control_name(self.variants)

    @property
    def variant_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.variants)

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment_id": self.experiment_id,
            "name": self.name,
            "variants": [s.to_dict() for s in self.variants],
            "planned_shares": dict(self.planned_shares or {}),
            "design": self.design,
            "primary_metric": self.primary_metric,
            "secondary_metrics": list(self.secondary_metrics),
            "alpha": self.alpha,
            "power": self.power,
            "planned_videos": self.planned_videos,
            "planned_impressions_per_arm": self.planned_impressions_per_arm,
            "planned_days": self.planned_days,
            "start_date": self.start_date.isoformat() if self.start_date else None,
            "expected_base_ctr": self.expected_base_ctr,
            "expected_icc": self.expected_icc,
            "stopping_rule": self.stopping_rule,
            **dict(self.extra),
        }

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any]) -> ExperimentConfig:
        known = {
            "experiment_id",
            "name",
            "variants",
            "planned_shares",
            "design",
            "primary_metric",
            "secondary_metrics",
            "alpha",
            "power",
            "planned_videos",
            "planned_impressions_per_arm",
            "planned_days",
            "start_date",
            "expected_base_ctr",
            "expected_icc",
            "stopping_rule",
        }
        if "experiment_id" not in entry:
            raise ValueError("experiment config needs an experiment_id")
        kwargs: dict[str, Any] = {k: v for k, v in entry.items() if k in known and v is not None}
        kwargs["experiment_id"] = str(entry["experiment_id"])
        if "variants" in kwargs:
            kwargs["variants"] = load_variant_config(kwargs["variants"])
        if "secondary_metrics" in kwargs:
            kwargs["secondary_metrics"] = tuple(kwargs["secondary_metrics"])
        if isinstance(kwargs.get("start_date"), str):
            kwargs["start_date"] = _dt.date.fromisoformat(kwargs["start_date"])
        kwargs["extra"] = {k: v for k, v in entry.items() if k not in known}
        return cls(**kwargs)


def load_experiment_config(path: str | os.PathLike[str]) -> ExperimentConfig:
    """Read an experiment config YAML file (see the module docstring for the fields)."""
    import yaml

    path = Path(path)
    try:
        entry = yaml.safe_load(path.read_text())
        if not isinstance(entry, Mapping):
            raise ValueError("expected a mapping of fields")
        return ExperimentConfig.from_dict(entry)
    except (OSError, ValueError, TypeError, yaml.YAMLError) as exc:
        raise ValueError(f"experiment config {path}: {exc}") from exc


def ensure_registry_table(con: Any) -> None:
    con.execute(EXPERIMENT_VARIANTS_DDL)
    con.execute(CONFIGS_DDL)


def register_experiment_config(database: str | os.PathLike[str], config: ExperimentConfig) -> None:
    """Record the experiment, its config (``experiment_configs``: design, primary metric, alpha and
    the whole config as JSON), planned shares and variant registry, replacing earlier ones.

    The config's ``start_date`` is the planned start: the ``experiments`` row keeps the earliest
    date known (:func:`~align_core.experiments.experiments_table.record_experiment`)."""
    from align_core.experiments.ab_results import ensure_tables

    with write_connection(database) as con:
        with transaction(con):
            ensure_tables(con)
            record_experiment(con, config.experiment_id, config.name, config.start_date)
            con.execute(
                "INSERT OR REPLACE INTO experiment_configs VALUES (?, ?, ?, ?, ?)",
                [
                    config.experiment_id,
                    config.design,
                    config.primary_metric,
                    config.alpha,
                    json.dumps(config.to_dict(), sort_keys=True, default=str),
                ],
            )
            con.execute("DELETE FROM experiment_arms WHERE experiment_id = ?", [config.experiment_id])
            con.execute("DELETE FROM experiment_variants WHERE experiment_id = ?", [config.experiment_id])
            for position, spec in enumerate(config.variants):
                con.execute(
                    "INSERT INTO experiment_arms VALUES (?, ?, ?)",
                    [config.experiment_id, spec.name, float(config.planned_shares[spec.name])],
                )
                con.execute(
                    "INSERT INTO experiment_variants VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [config.experiment_id, spec.name, position, spec.window, spec.factor, spec.kind, spec.role],
                )
            save_experiment_file(con, config.experiment_id)


def registered_variants(con: Any) -> dict[str, tuple[VariantSpec, ...]]:
    """Each registered experiment's variant registry, in its configured order (empty if none)."""
    if not table_exists(con, "experiment_variants"):
        return {}
    rows = con.execute(
        'SELECT experiment_id, variant, "window", factor, kind, role FROM experiment_variants ORDER BY experiment_id, position'
    ).fetchall()
    out: dict[str, list[VariantSpec]] = {}
    for exp, name, window, factor, kind, role in rows:
        out.setdefault(str(exp), []).append(VariantSpec(name, window, factor, kind, role))
    return {exp: tuple(specs) for exp, specs in out.items()}


def registered_configs(con: Any) -> dict[str, ExperimentConfig]:
    """Every registered experiment's whole config (design, metrics, plan inputs, arms)."""
    if not table_exists(con, "experiment_configs"):
        return {}
    rows = con.execute("SELECT experiment_id, config_json FROM experiment_configs ORDER BY experiment_id").fetchall()
    return {str(exp): ExperimentConfig.from_dict(json.loads(text)) for exp, text in rows}


def variants_for(database: str | os.PathLike[str], experiment_id: str) -> tuple[VariantSpec, ...]:
    """The experiment's registered variants, or the default registry when it was never registered."""
    if not Path(database).exists():
        return DEFAULT_VARIANTS
    with read_connection(database) as con:
        return registered_variants(con).get(experiment_id, DEFAULT_VARIANTS)
