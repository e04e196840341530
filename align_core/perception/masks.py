"""Keyword masks M_t in {0, 1}: where the product named by the keyword is, frame by frame.

A pluggable :class:`KeywordSegmenter` turns a batch of RGB frames and a keyword into per-pixel
probabilities; :func:`segment_video` streams a video through it in batches and thresholds the
probabilities at a fixed, documented value.

Why a fixed threshold and no per-frame normalisation: a product that is not in the frame must
give an EMPTY mask. Rescaling each frame's probabilities to [0, 1] (or thresholding at a
per-frame quantile) would always "find" something, and the alignment a_t = sum(A M) / sum(A)
would then measure attention on noise.

Segmenters:

``clipseg``
    ``CLIPSegForImageSegmentation`` (e.g. ``CIDAS/clipseg-rd64-refined``) loaded with
    ``from_pretrained`` from a local directory or a hub id already in the local cache (offline:
    ``local_files_only=True`` by default). The keyword is embedded once per call and repeated
    over the batch, so one forward pass covers a batch of frames. Sigmoid probabilities are
    upsampled bilinearly from the model's square output back to the frame size (this also undoes
    the processor's squash of a 9:16 frame to a square).
``annotated``
    No weights: one box (or clicks, or a mask PNG) per scene in ``raw/annotations.csv``,
    segmented with GrabCut at the box's scale and carried through the scene by DIS optical flow
    in both directions (:mod:`align_core.perception.annotated_masks`, formats in :mod:`align_core.inputs.annotations`).
``clipseg+annotated``
    CLIPSeg whose probabilities are kept only near the annotated (and carried) product.
``provided``
    Per-frame masks shipped with the corpus (``raw/masks/<video_id>.npz``, written by
    :func:`align_core.io.arrays.save_mask_stack`), checked against the video's frame count and size
    and returned as 0/1 probabilities. The stack stays bit-packed in memory and is unpacked one
    batch at a time.

Threshold: :data:`DEFAULT_THRESHOLD` = 0.5, i.e. a pixel is in the mask when the model's logit is
positive. CLIPSeg's decoder is trained with a per-pixel binary cross-entropy against binary
masks, so 0.5 is the decision boundary of its own objective and needs no data-set-specific
tuning; it is deliberately not lowered to catch faint responses because a false product region
inflates alignment. ``KeywordMasks.max_probability`` records each frame's peak probability so a
researcher can calibrate a different value on annotated frames and pass it in.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from align_core.components import Registry
from align_core.io.arrays import save_npz_atomic, unpack_masks
from align_core.io.frames import MaskFrames
from align_core.io.hashing import file_sha256
from align_core.io.video_io import VideoProbe, iter_frames, probe_video

__all__ = [
    "DEFAULT_THRESHOLD",
    "KeywordMasks",
    "KeywordSegmenter",
    "ProvidedMaskSegmenter",
    "SEGMENTERS",
    "load_keyword_masks",
    "make_segmenter",
    "resolve_mask_source",
    "save_keyword_masks",
    "segment_video",
]

#: Probability above which a pixel belongs to the keyword mask (see module docstring).
DEFAULT_THRESHOLD = 0.5

#: Frames per segmenter call: bounds memory to one batch of frames plus the boolean output.
DEFAULT_BATCH_SIZE = 8


@runtime_checkable
class KeywordSegmenter(Protocol):
    """Turns frames and a keyword into per-pixel probabilities that the keyword's object is there.

    ``segment`` receives ``frames`` uint8 ``(B, H, W, 3)`` RGB and the index ``start`` of
    ``frames[0]`` in the video (segmenters that read stored masks need it; models ignore it) and
    returns float32 ``(B, H, W)`` probabilities in [0, 1], never normalised per frame.
    ``prepare`` is called once per video before the first batch, so a segmenter can check that
    it fits the video. ``lineage`` says which weights or files produced the masks.
    """

    name: str

    def prepare(self, probe: VideoProbe) -> None: ...

    def segment(self, frames: np.ndarray, keyword: str, *, start: int = 0) -> np.ndarray: ...

    def lineage(self) -> dict[str, Any]: ...


#: Every keyword segmenter by name (one registry style for scorers, segmenters and editors).
SEGMENTERS: Registry[KeywordSegmenter] = Registry("segmenter")
#: ``@register_segmenter("name")`` registers a segmenter factory so configs can select it by string.
register_segmenter = SEGMENTERS.register


def available_segmenters() -> list[str]:
    return SEGMENTERS.names()


def make_segmenter(name: str, **kwargs: Any) -> KeywordSegmenter:
    """Build the segmenter registered as ``name`` (``clipseg``, ``provided``) with ``kwargs``."""
    return SEGMENTERS.build(name, **kwargs)


def _check_frames(frames: np.ndarray, who: str) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"{who}: expected RGB uint8 frames (B, H, W, 3), got {frames.dtype} {frames.shape}")
    return frames


def _weights_digest(directory: Path) -> dict[str, str]:
    """sha256 of each weight file in a local model directory (what 'which weights' means)."""
    digests = {}
    for pattern in ("*.safetensors", "*.bin"):
        for path in sorted(directory.glob(pattern)):
            digests[path.name] = file_sha256(path)
    return digests


@register_segmenter("clipseg")
class ClipSegSegmenter:
    """CLIPSeg text-prompted segmentation, batched over frames.

    ``model`` is a local diffusers-style directory or a hub id; with ``local_files_only`` (the
    default) nothing is downloaded, so a missing model fails at construction with its name.
    """

    name = "clipseg"

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        device: str = "cpu",
        local_files_only: bool = True,
        torch_dtype: str = "float32",
    ):
        import torch
        from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

        self.model_ref = str(model)
        self.device = torch.device(device)
        self.dtype = getattr(torch, torch_dtype)
        try:
            self.processor = CLIPSegProcessor.from_pretrained(self.model_ref, local_files_only=local_files_only)
            self.model = CLIPSegForImageSegmentation.from_pretrained(
                self.model_ref, local_files_only=local_files_only, dtype=self.dtype
            )
        except (OSError, ValueError) as exc:
            raise ValueError(f"CLIPSeg model {self.model_ref!r} cannot be loaded ({exc})") from exc
        self.model.to(self.device).eval()
        self._embeddings: dict[str, Any] = {}
        self._lineage: dict[str, Any] | None = None

    def prepare(self, probe: VideoProbe) -> None:
        """Any video fits: frames are resized by the processor and probabilities upsampled back."""

    def _keyword_embedding(self, keyword: str) -> Any:
        import torch

        if keyword not in self._embeddings:
            text = self.processor.tokenizer([keyword], padding=True, return_tensors="pt")
            with torch.inference_mode():
                embedding = self.model.get_conditional_embeddings(
                    batch_size=1,
                    input_ids=text["input_ids"].to(self.device),
                    attention_mask=text["attention_mask"].to(self.device),
                )
            self._embeddings[keyword] = embedding
        return self._embeddings[keyword]

    def segment(self, frames: np.ndarray, keyword: str, *, start: int = 0) -> np.ndarray:
        """Sigmoid probabilities ``(B, H, W)`` at frame size; one forward pass for the batch."""
        import torch
        import torch.nn.functional as F

        frames = _check_frames(frames, f"clipseg {self.model_ref}")
        batch, height, width = frames.shape[:3]
        pixels = self.processor.image_processor(images=list(frames), return_tensors="pt")["pixel_values"]
        conditional = self._keyword_embedding(keyword).expand(batch, -1)
        with torch.inference_mode():
            logits = self.model(
                pixel_values=pixels.to(self.device, self.dtype), conditional_embeddings=conditional
            ).logits
            logits = logits.reshape(batch, 1, *logits.shape[-2:]).float()
            probs = F.interpolate(torch.sigmoid(logits), size=(height, width), mode="bilinear", align_corners=False)
            probs = probs[:, 0].clamp(0.0, 1.0).cpu().numpy()
        return probs.astype(np.float32, copy=False)

    def lineage(self) -> dict[str, Any]:
        """Model reference, resolved commit (hub) or weight-file hashes (local dir), and config size."""
        if self._lineage is None:
            config = self.model.config
            local = Path(self.model_ref)
            self._lineage = {
                "segmenter": self.name,
                "model": self.model_ref,
                "commit": getattr(config, "_commit_hash", None),
                "weights_sha256": _weights_digest(local) if local.is_dir() else None,
                "vision_hidden_size": int(config.vision_config.hidden_size),
                "vision_layers": int(config.vision_config.num_hidden_layers),
                "reduce_dim": int(config.reduce_dim),
                "image_size": int(config.vision_config.image_size),
            }
        return dict(self._lineage)


@register_segmenter("provided")
class ProvidedMaskSegmenter:
    """Masks shipped with the corpus: one bit-packed stack per video, validated against the video.

    The stack is kept bit-packed (1/8 byte per pixel) and each batch is unpacked on demand. A
    file written frame by frame (:meth:`~align_core.io.frames.MaskFrames.to_arrays` with prefix
    ``mask``, as for long real-size ads) stays deflated per frame: memory does not grow with length.
    """

    name = "provided"

    def __init__(self, mask_path: str | os.PathLike[str]):
        self.mask_path = Path(mask_path)
        if not self.mask_path.is_file():
            raise FileNotFoundError(f"provided mask file {self.mask_path} does not exist")
        self._frames: MaskFrames | None = None
        try:
            with np.load(self.mask_path, allow_pickle=False) as data:
                if "mask_offsets" in data:  # per-frame deflated (long, real-size ads): never a whole stack
                    self._frames = MaskFrames.from_arrays(data, "mask")
                    self.shape = tuple(int(v) for v in self._frames.shape)
                    self._bits = np.zeros(0, dtype=np.uint8)
                else:
                    self._bits = np.asarray(data["bits"], dtype=np.uint8)
                    self.shape = tuple(int(v) for v in data["shape"])
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"mask file {self.mask_path}: cannot be read as a packed mask stack ({exc})") from exc
        if len(self.shape) != 3 or min(self.shape) <= 0:
            raise ValueError(f"mask file {self.mask_path}: stack shape {self.shape} is not (T, H, W)")
        if self._frames is None and self._bits.size * 8 < int(np.prod(self.shape)):
            raise ValueError(
                f"mask file {self.mask_path}: holds {self._bits.size * 8} bits, shape {self.shape} needs "
                f"{int(np.prod(self.shape))} (truncated file?)"
            )
        self._sha256: str | None = None

    def prepare(self, probe: VideoProbe) -> None:
        """Fail early, naming both files and shapes, when the stack does not match the video."""
        expected = (probe.frame_count, probe.height, probe.width)
        if self.shape != expected:
            raise ValueError(
                f"mask file {self.mask_path} has shape (T, H, W) = {self.shape} but video {probe.path} "
                f"has {expected} ({probe.frame_count} frames of {probe.width}x{probe.height})"
            )

    def segment(self, frames: np.ndarray, keyword: str, *, start: int = 0) -> np.ndarray:
        """The stored masks for frames ``[start, start + B)`` as 0/1 float32 probabilities."""
        frames = _check_frames(frames, f"provided masks {self.mask_path}")
        count, height, width = self.shape
        batch = frames.shape[0]
        if frames.shape[1:3] != (height, width):
            raise ValueError(
                f"mask file {self.mask_path}: masks are {width}x{height}, frames are {frames.shape[2]}x{frames.shape[1]}"
            )
        if start < 0 or start + batch > count:
            raise ValueError(
                f"mask file {self.mask_path}: holds {count} frames, asked for frames [{start}, {start + batch})"
            )
        if self._frames is not None:
            return self._frames[start : start + batch].astype(np.float32)
        per_frame = height * width
        first_bit, last_bit = start * per_frame, (start + batch) * per_frame
        chunk = self._bits[first_bit // 8 : (last_bit + 7) // 8]
        bits = np.unpackbits(chunk, count=last_bit - (first_bit // 8) * 8)[first_bit % 8 :]
        return bits.reshape(batch, height, width).astype(np.float32)

    def lineage(self) -> dict[str, Any]:
        if self._sha256 is None:
            self._sha256 = file_sha256(self.mask_path)
        return {"segmenter": self.name, "mask_file": str(self.mask_path), "mask_sha256": self._sha256}


@register_segmenter("annotated")
def _annotated_segmenter(**kwargs: Any) -> KeywordSegmenter:
    """Weight-free masks from boxes, clicks or mask PNGs per scene (:mod:`align_core.perception.annotated_masks`)."""
    from align_core.perception.annotated_masks import AnnotatedSegmenter

    return AnnotatedSegmenter(**kwargs)


@register_segmenter("clipseg+annotated")
def _clipseg_annotated_segmenter(
    *,
    model: str | os.PathLike[str],
    device: str = "cpu",
    local_files_only: bool = True,
    torch_dtype: str = "float32",
    **annotated: Any,
) -> KeywordSegmenter:
    """CLIPSeg whose probabilities the annotations constrain to the annotated product's region."""
    from align_core.perception.annotated_masks import AnnotatedSegmenter, ClipSegWithAnnotations

    clipseg = ClipSegSegmenter(model, device=device, local_files_only=local_files_only, torch_dtype=torch_dtype)
    return ClipSegWithAnnotations(clipseg, AnnotatedSegmenter(**annotated))


def resolve_mask_source(
    requested: str, *, provided_file: str | os.PathLike[str], annotated: bool
) -> tuple[str, str | None]:
    """Which segmenter makes a video's masks, and why none can (``(name, skipped_reason)``).

    ``provided`` (the demo profile's default) uses the provided mask file and falls back to the
    annotations when a video has none, so real clips get masks on a CPU; ``clipseg`` becomes
    ``clipseg+annotated`` when the video is annotated; ``annotated`` needs annotations.
    """
    if requested not in SEGMENTERS:
        raise ValueError(f"unknown segmenter {requested!r}; available: {', '.join(available_segmenters())}")
    hint = "draw one box per scene with `align-annotate` (writes raw/annotations.csv)"
    if requested == "provided":
        if Path(provided_file).is_file():
            return "provided", None
        if annotated:
            return "annotated", None
        return (
            "provided",
            f"no provided mask file at {provided_file} and no annotations for this video ({hint}; or use clipseg)",
        )
    if requested == "annotated" and not annotated:
        return "annotated", f"no annotations for this video ({hint})"
    if requested == "clipseg" and annotated:
        return "clipseg+annotated", None
    return requested, None


@dataclass
class KeywordMasks:
    """Thresholded masks of one video for one keyword, with what produced them.

    ``coverage`` is the per-frame fraction of pixels in the mask; ``max_probability`` is each
    frame's peak probability (for calibrating the threshold; 0 for skipped videos).
    ``skipped_reason`` is set (and every mask empty) when the keyword was screened out.
    """

    masks: MaskFrames | np.ndarray  # bool (T, H, W): per-frame compressed (MaskFrames) or dense
    threshold: float
    segmenter_id: str
    keyword: str
    coverage: np.ndarray  # float64 (T,)
    max_probability: np.ndarray  # float32 (T,)
    skipped_reason: str | None = None
    lineage: dict[str, Any] = field(default_factory=dict)

    @property
    def frame_count(self) -> int:
        return int(self.masks.shape[0])

    def summary(self) -> dict[str, Any]:
        """Small JSON-able record for asset metadata."""
        return {
            "keyword": self.keyword,
            "segmenter_id": self.segmenter_id,
            "threshold": self.threshold,
            "frames": self.frame_count,
            "height": int(self.masks.shape[1]),
            "width": int(self.masks.shape[2]),
            "frames_with_product": int((self.coverage > 0).sum()),
            "mean_coverage": float(self.coverage.mean()) if self.frame_count else 0.0,
            "skipped_reason": self.skipped_reason,
            "lineage": self.lineage,
        }


def save_keyword_masks(path: str | os.PathLike[str], result: KeywordMasks) -> Path:
    """Write masks (each frame bit-packed and deflated) plus their metadata (JSON) in one npz, atomically."""
    meta = {k: v for k, v in result.summary().items()}
    frames = result.masks if isinstance(result.masks, MaskFrames) else MaskFrames.from_array(result.masks)
    return save_npz_atomic(
        path,
        **frames.to_arrays("mask"),
        max_probability=np.asarray(result.max_probability, dtype=np.float32),
        meta=np.asarray(json.dumps(meta, sort_keys=True)),
    )


def load_keyword_masks(path: str | os.PathLike[str]) -> KeywordMasks:
    """Read what :func:`save_keyword_masks` wrote: masks stay compressed, decoded frame by frame.

    Files of the earlier layout (one bit-packed stack) are read too, as a dense stack.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            masks = (
                MaskFrames.from_arrays(data, "mask")
                if "mask_offsets" in data
                else unpack_masks(data["bits"], data["shape"])
            )
            max_probability = np.asarray(data["max_probability"], dtype=np.float32)
            meta = json.loads(str(data["meta"]))
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"keyword mask file {path}: cannot be read ({exc})") from exc
    return KeywordMasks(
        masks=masks,
        threshold=float(meta["threshold"]),
        segmenter_id=meta["segmenter_id"],
        keyword=meta["keyword"],
        coverage=masks.coverage_per_frame()
        if isinstance(masks, MaskFrames)
        else masks.reshape(masks.shape[0], -1).mean(axis=1, dtype=np.float64),
        max_probability=max_probability,
        skipped_reason=meta["skipped_reason"],
        lineage=meta["lineage"],
    )


def segmenter_id(segmenter: KeywordSegmenter) -> str:
    """Short stable id: the segmenter's name plus a hash of its lineage."""
    lineage = json.dumps(segmenter.lineage(), sort_keys=True, default=str)
    return f"{segmenter.name}:{hashlib.sha256(lineage.encode()).hexdigest()[:12]}"


def segment_video(
    video_path: str | os.PathLike[str],
    keyword: str,
    segmenter: KeywordSegmenter | None,
    threshold: float = DEFAULT_THRESHOLD,
    batch_size: int = DEFAULT_BATCH_SIZE,
    *,
    screened_reason: str | None = None,
    probe: VideoProbe | None = None,
) -> KeywordMasks:
    """Masks for every frame of ``video_path``: probabilities > ``threshold``, streamed in batches.

    A screened keyword (``screened_reason`` set by the keyword screen) returns all-empty masks
    with ``skipped_reason`` and never calls the segmenter (which may then be None). Memory is one
    batch of frames plus the boolean output.
    """
    video_path = Path(video_path)
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold {threshold} must be in [0, 1): masks are probabilities > threshold")
    if batch_size < 1:
        raise ValueError(f"batch_size {batch_size} must be >= 1")
    probe = probe or probe_video(video_path)
    if screened_reason is not None:
        return _screened_masks(probe, keyword, threshold, screened_reason)
    if segmenter is None:
        raise ValueError(f"video {video_path}: keyword {keyword!r} was not screened out, so a segmenter is needed")
    segmenter.prepare(probe)
    batches = _Batches(video_path, probe, keyword, segmenter, threshold)
    batches.segment_all(batch_size)
    return KeywordMasks(
        masks=batches.masks,
        threshold=threshold,
        segmenter_id=segmenter_id(segmenter),
        keyword=keyword,
        coverage=batches.masks.coverage_per_frame(),
        max_probability=batches.max_probability,
        lineage=segmenter.lineage(),
    )


def _screened_masks(probe: VideoProbe, keyword: str, threshold: float, reason: str) -> KeywordMasks:
    """All-empty masks for a screened keyword (the segmenter is never called)."""
    masks = MaskFrames(probe.height, probe.width)
    empty = np.zeros((probe.height, probe.width), dtype=bool)
    for _ in range(probe.frame_count):
        masks.append(empty)
    return KeywordMasks(
        masks=masks,
        threshold=threshold,
        segmenter_id="screened",
        keyword=keyword,
        coverage=np.zeros(probe.frame_count),
        max_probability=np.zeros(probe.frame_count, dtype=np.float32),
        skipped_reason=reason,
        lineage={"segmenter": None, "skipped_reason": reason},
    )


class _Batches:
    """Streams a video through a segmenter in batches, keeping masks and each frame's top probability."""

    def __init__(
        self, video_path: Path, probe: VideoProbe, keyword: str, segmenter: KeywordSegmenter, threshold: float
    ):
        self.video_path = video_path
        self.probe = probe
        self.keyword = keyword
        self.segmenter = segmenter
        self.threshold = threshold
        self.masks = MaskFrames(probe.height, probe.width)
        self.max_probability = np.zeros(probe.frame_count, dtype=np.float32)

    def segment_all(self, batch_size: int) -> None:
        """Every frame, checking that the decoder yields exactly the probed frame count."""
        batch: list[np.ndarray] = []
        start = 0
        decoded = 0
        for frame in iter_frames(self.video_path):
            if decoded >= self.probe.frame_count:
                raise ValueError(
                    f"video {self.video_path}: decodes more frames than the {self.probe.frame_count} probed"
                )
            batch.append(frame)
            decoded += 1
            if len(batch) == batch_size:
                self._run(batch, start)
                start += len(batch)
                batch = []
        if batch:
            self._run(batch, start)
        if decoded != self.probe.frame_count:
            raise ValueError(
                f"video {self.video_path}: decoded {decoded} frames, probe counted {self.probe.frame_count}"
            )

    def _run(self, batch: list[np.ndarray], start: int) -> None:
        frames = np.stack(batch)
        probs = np.asarray(self.segmenter.segment(frames, self.keyword, start=start))
        name = self.segmenter.name
        if probs.shape != frames.shape[:3]:
            raise ValueError(
                f"video {self.video_path}: segmenter {name} returned {probs.shape} for frames {frames.shape[:3]}"
            )
        if not np.isfinite(probs).all() or probs.min() < 0.0 or probs.max() > 1.0:
            raise ValueError(
                f"video {self.video_path}: segmenter {name} returned values outside [0, 1] "
                f"for frames [{start}, {start + len(batch)})"
            )
        for mask in probs > self.threshold:
            self.masks.append(mask)
        self.max_probability[start : start + len(batch)] = probs.reshape(len(batch), -1).max(axis=1)
