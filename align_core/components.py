"""Pluggable components (attention scorers, keyword segmenters, keyframe editors): one registry style.

Each kind has one :class:`Registry` beside its implementations (``SCORERS`` in
:mod:`align_core.perception.attention.scorers`, ``SEGMENTERS`` in :mod:`align_core.perception.masks`, ``EDITORS`` in
:mod:`align_core.stimuli.editing.base`); an implementation registers itself by name with
``@REGISTRY.register("name", **traits)`` and is built with ``REGISTRY.build(name, **options)``.
Traits are what callers need to know before building one (for example an editor that reads the
trained ControlNet checkpoint), so the asset graph can be shaped without loading a model.

The *choices* below (which scorer, segmenter, editor, with their options) are plain pydantic
models: the Dagster layer turns each into a ``ConfigurableResource`` by subclassing it, so a
component is configured in exactly one place and every stage that uses it gets the same one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

from align_core.measurement.perceptual_budget import DEFAULT_MAX_DELTA_E, DEFAULT_MIN_SSIM, PerceptualBudget

__all__ = [
    "EditorChoice",
    "Registry",
    "ScorerChoice",
    "SegmenterChoice",
]

T = TypeVar("T")


class Registry(Generic[T]):
    """Named factories of one kind of component, with per-name traits."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}
        self._traits: dict[str, dict[str, Any]] = {}

    def register(self, name: str, **traits: Any) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: register ``factory`` (a class or a function) under ``name``."""

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            self.add(name, factory, **traits)
            return factory

        return decorator

    def add(self, name: str, factory: Callable[..., T], **traits: Any) -> None:
        if name in self._factories:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._factories[name] = factory
        self._traits[name] = dict(traits)

    def build(self, name: str, **options: Any) -> T:
        """The component registered as ``name``, built with ``options``."""
        return self[name](**options)

    def traits(self, name: str) -> dict[str, Any]:
        self[name]  # noqa: B018  (raises the helpful error for an unknown name)
        return dict(self._traits[name])

    def names(self) -> list[str]:
        return sorted(self._factories)

    def __getitem__(self, name: str) -> Callable[..., T]:
        try:
            return self._factories[name]
        except KeyError:
            raise ValueError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def get(self, name: str, default: Callable[..., T] | None = None) -> Callable[..., T] | None:
        return self._factories.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._factories)


class _Choice(BaseModel):
    """A component choice; ``resolved(default)`` fills the name from the profile when unset."""

    _name_field: str = ""

    def resolved(self, default: str):
        """A plain copy of this choice (also of a Dagster resource subclassing it) with the name filled in."""
        base = next(cls for cls in type(self).__mro__ if cls.__module__ == __name__ and cls is not _Choice)
        values = {name: getattr(self, name) for name in base.model_fields}
        values[self._name_field] = values[self._name_field] or default
        return base(**values)

    @property
    def name(self) -> str:
        value = getattr(self, self._name_field)
        if not value:
            raise ValueError(f"no {self._name_field} chosen: call resolved(<the profile's default>) first")
        return value


class ScorerChoice(_Choice):
    """Which attention scorer (and per-frame procedure) makes the attention maps AND measures the variants."""

    scorer: str | None = Field(
        default=None, description="feature_richness | spectral_residual | llava | provided (default: the profile's)"
    )
    llava_model_path: str | None = Field(default=None, description="local LLaVA directory (the llava scorer)")
    provided_maps: str | None = Field(
        default=None, description="directory or npz of external heatmaps (the provided scorer)"
    )
    max_long_side: int = Field(default=512, description="working resolution for scoring; maps are resized back")

    _name_field = "scorer"

    def build(self, device: str = "cpu") -> Any:
        """The configured :class:`~align_core.perception.attention.PatchScorer`."""
        from align_core.perception.attention.scorers import SCORERS

        name = self.name
        if name == "llava":
            if not self.llava_model_path:
                raise ValueError(
                    "the llava scorer needs llava_model_path (a local LLaVA directory); no hub downloads here"
                )
            return SCORERS.build("llava", model_path=self.llava_model_path, device=device)
        if name == "provided":
            if not self.provided_maps:
                raise ValueError("the provided scorer needs provided_maps (a directory or npz of heatmaps)")
            return SCORERS.build("provided", source=self.provided_maps)
        return SCORERS.build(name)


class SegmenterChoice(_Choice):
    """Which keyword segmenter makes the product masks, and its threshold."""

    segmenter: str | None = Field(
        default=None,
        description="provided | annotated | clipseg | clipseg+annotated (default: the profile's; 'provided' falls back "
        "to annotations in raw/annotations.csv when a video has no provided mask file, 'clipseg' is constrained by them)",
    )
    clipseg_model: str = Field(
        default="CIDAS/clipseg-rd64-refined", description="local directory or a hub id already in the local cache"
    )
    threshold: float = Field(default=0.5, description="a pixel is product when its probability exceeds this")
    batch_size: int = Field(default=8)

    _name_field = "segmenter"


class EditorChoice(_Choice):
    """Which keyframe editor renders the variants, and the ControlNet editor's sampling knobs."""

    editor: str | None = Field(default=None, description="salience | controlnet (default: the profile's)")
    controlnet_steps: int = Field(default=20)
    controlnet_strength: float = Field(default=0.5)
    controlnet_guidance: float = Field(default=1.0)
    controlnet_scheduler: str = Field(default="ddim")
    controlnet_resolution: int | None = Field(
        default=None, description="edit at this size (None: the checkpoint's training size x8)"
    )
    min_ssim: float = Field(
        default=DEFAULT_MIN_SSIM,
        description="perceptual budget (model-free editor): per-frame SSIM outside product and protected regions",
    )
    max_delta_e: float = Field(
        default=DEFAULT_MAX_DELTA_E,
        description="perceptual budget (model-free editor): per-frame mean CIEDE2000 outside product and protected regions",
    )
    budget_limits: dict[str, float] = Field(
        default_factory=dict,
        description="perceptual budget (model-free editor): its other limits by name, as variant_quality's "
        "budget_limits; unset: the defaults",
    )

    _name_field = "editor"

    @property
    def needs_checkpoint(self) -> bool:
        """Whether the chosen editor reads the trained ControlNet checkpoint (shapes the asset graph)."""
        from align_core.stimuli.editing.base import EDITORS

        return bool(EDITORS.traits(self.name).get("needs_checkpoint", False))

    def build(self, *, prompt: str, device: str = "cpu", checkpoint: dict | None = None) -> Any:
        """The configured :class:`~align_core.stimuli.editing.base.KeyframeEditor`.

        ``checkpoint`` is the ``controlnet_checkpoint`` pointer (``current.json``) for editors
        whose trait ``needs_checkpoint`` is set.
        """
        from align_core.stimuli.editing.base import EDITORS

        name = self.name
        options: dict[str, Any] = {}
        if EDITORS.traits(name).get("needs_checkpoint"):
            if checkpoint is None:
                raise FileNotFoundError(
                    f"the {name} editor needs a trained checkpoint: materialize controlnet_checkpoint first"
                )
            options = {
                "checkpoint": checkpoint,
                "steps": self.controlnet_steps,
                "strength": self.controlnet_strength,
                "guidance_scale": self.controlnet_guidance,
                "scheduler": self.controlnet_scheduler,
                "resolution": self.controlnet_resolution,
                "device": device,
                "prompt": prompt,
            }
        elif name == "salience":
            options = {"budget": PerceptualBudget.from_settings(self.min_ssim, self.max_delta_e, self.budget_limits)}
        return EDITORS.build(name, **options)
