"""Temporal propagation: carry keyframe edits to the frames between them by dense optical flow.

Keyframes are every scene's first frame and every ``stride`` frames after it within the scene
(scene-relative, so no keyframe lands a frame after a cut). A frame between keyframes ``p`` and
``n`` of the same scene gets the edit from both, and never from another scene.

What is propagated is the RESIDUAL ``edited_key - original_key``, warped to frame t and added
to the ORIGINAL frame t. Warping edited pixels instead would paste keyframe content over frame
t, ghosting wherever flow is wrong and freezing new content (things entering the frame,
disocclusions) until the next keyframe. With a residual, frame t keeps its own content and
motion; only the edit's change moves, and where it cannot be carried the frame falls back to
the original (zero residual), which is what an unedited pixel looks like anyway.

Warp direction (backward mapping): to bring keyframe content to frame t, ``cv2.remap`` needs,
for every pixel x of frame t, where x is in the keyframe: the flow FROM t TO the keyframe,
``F_{t->k}``, sampling ``residual_k(x + F_{t->k}(x))``. The original research code used the
flow the other way round and moved edits against the motion; ``tests/test_propagation.py``
pins the direction on a translating pattern.

Flow to a keyframe is chained from adjacent-frame DIS flows (``F_{t->k}(x) = F_{t->t-1}(x) +
F_{t-1->k}(x + F_{t->t-1}(x))``): direct DIS between frames ``stride`` apart loses track of
large motion on fine texture. Occlusion: each link is trusted where the reverse flow, sampled
at the target, brings the pixel back (forward-backward check, Sundaram et al. 2010: ``|F + B|^2
<= a(|F|^2 + |B|^2) + b``) inside the frame; a chain is trusted where all its links are. Each direction is weighted by temporal closeness
(``(n - t)/(n - p)`` for p); untrusted directions get weight 0; the weights are renormalised;
where neither direction is trusted the residual is 0 (the original pixel).

Memory is bounded by one keyframe interval: frames stream in, and at most ``stride + 1``
frames plus the keyframe edits are held at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

__all__ = [
    "FlowPropagator",
    "Segment",
    "iter_segments",
    "keyframe_indices",
    "propagate_edits",
    "propagate_segment",
]


def keyframe_indices(scene_ranges: Sequence[tuple[int, int]], stride: int) -> np.ndarray:
    """Every scene's first frame and every ``stride``-th frame after it within the scene."""
    if stride < 1:
        raise ValueError(f"keyframe stride must be >= 1, got {stride}")
    keys: list[int] = []
    for start, stop in scene_ranges:
        keys.extend(range(int(start), int(stop), stride))
    return np.asarray(keys, dtype=np.int64)


@dataclass
class Segment:
    """Frames ``[start, stop)`` of one scene: ``start`` is a keyframe, ``stop`` the next one or the scene end.

    ``frames`` holds frames start..stop-1; ``next_frame`` is the next keyframe (frame ``stop``)
    when it is in the same scene, else None.
    """

    scene_index: int
    start: int
    stop: int
    frames: list[np.ndarray]
    next_frame: np.ndarray | None

    @property
    def next_key(self) -> int | None:
        return self.stop if self.next_frame is not None else None


def iter_segments(
    frames: Iterable[np.ndarray], scene_ranges: Sequence[tuple[int, int]], stride: int
) -> Iterator[Segment]:
    """Stream a video's frames as keyframe segments, holding at most ``stride + 1`` frames."""
    keys = set(int(k) for k in keyframe_indices(scene_ranges, stride))
    scene_index = {int(start): i for i, (start, _) in enumerate(scene_ranges)}
    iterator = iter(frames)
    current: list[np.ndarray] = []
    start = 0
    scene = 0
    total = int(scene_ranges[-1][1])
    for index in range(total):
        try:
            frame = next(iterator)
        except StopIteration:
            raise ValueError(f"video ended after {index} frames; the scenes cover {total}") from None
        if index in keys and current:
            next_frame = frame if index not in scene_index else None
            yield Segment(scene, start, index, current, next_frame)
            current, start = [], index
        scene = scene_index.get(index, scene)
        current.append(frame)
    if current:
        yield Segment(scene, start, total, current, None)


def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    return xs, ys


def _gray(frame: np.ndarray) -> np.ndarray:
    return frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


@dataclass
class DirectionalWarp:
    """Backward-mapping grids from frame t into one keyframe, and where they are trusted."""

    map_x: np.ndarray
    map_y: np.ndarray
    valid: np.ndarray  # float32 (H, W) in {0, 1}


@dataclass
class FrameWarp:
    """How frame t takes its edit from its previous and (if any) next keyframe."""

    frame: int
    prev: DirectionalWarp
    next: DirectionalWarp | None
    weight_prev: np.ndarray = field(repr=False)  # float32 (H, W), renormalised
    weight_next: np.ndarray | None = field(repr=False)


class FlowPropagator:
    """Dense DIS flow (on grayscale) with a forward-backward occlusion check."""

    def __init__(
        self,
        preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
        fb_alpha: float = 0.01,
        fb_beta: float = 0.5,
    ):
        self.preset = preset
        self.fb_alpha = fb_alpha
        self.fb_beta = fb_beta
        self._dis = cv2.DISOpticalFlow_create(preset)
        self._grid: tuple[np.ndarray, np.ndarray] | None = None

    def lineage(self) -> dict[str, object]:
        return {
            "flow": "opencv_dis",
            "preset": int(self.preset),
            "fb_alpha": self.fb_alpha,
            "fb_beta": self.fb_beta,
            "opencv": cv2.__version__,
            "propagated": "residual",
        }

    def flow(self, source: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Flow F with ``source(x) ~ target(x + F(x))``: F from source to target, float32 (H, W, 2)."""
        return self._dis.calc(_gray(source), _gray(target), None)

    def _xy(self, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        if self._grid is None or self._grid[0].shape != shape:
            self._grid = _grid(*shape)
        return self._grid

    def consistent(self, forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
        """Where ``forward`` (a->b) is trusted: ``backward`` (b->a) at the target brings it back, inside the frame."""
        height, width = forward.shape[:2]
        xs, ys = self._xy((height, width))
        map_x = xs + forward[..., 0]
        map_y = ys + forward[..., 1]
        back = cv2.remap(backward, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        mismatch = ((forward + back) ** 2).sum(axis=-1)
        bound = self.fb_alpha * ((forward**2).sum(axis=-1) + (back**2).sum(axis=-1)) + self.fb_beta
        inside = (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)
        return ((mismatch <= bound) & inside).astype(np.float32)

    def _compose(
        self, step: np.ndarray, step_valid: np.ndarray, rest: np.ndarray, rest_valid: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Flow t->k from t->s (``step``) and s->k (``rest``): step(x) + rest(x + step(x))."""
        xs, ys = self._xy(step.shape[:2])
        map_x = xs + step[..., 0]
        map_y = ys + step[..., 1]
        carried = cv2.remap(rest, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        carried_valid = cv2.remap(
            rest_valid, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
        )
        return step + carried, step_valid * (carried_valid > 0.999).astype(np.float32)

    def _direction(self, flow: np.ndarray, valid: np.ndarray) -> DirectionalWarp:
        xs, ys = self._xy(flow.shape[:2])
        return DirectionalWarp(xs + flow[..., 0], ys + flow[..., 1], valid)

    def plan_segment(self, segment: Segment) -> list[FrameWarp]:
        """Warps for every non-key frame of ``segment``; shared by every variant of the video.

        Flow to a keyframe several frames away is CHAINED from adjacent-frame flows (one DIS pair
        per frame pair): direct long-range DIS loses track beyond a few pixels of motion on fine
        texture, adjacent flows do not, and the chain costs two DIS calls per frame instead of four.
        A pixel is trusted only if every link of its chain passes the forward-backward check.
        """
        sequence = list(segment.frames) + ([segment.next_frame] if segment.next_frame is not None else [])
        grays = [_gray(f) for f in sequence]
        count = len(segment.frames)
        forward = [self.flow(grays[i], grays[i + 1]) for i in range(len(grays) - 1)]  # i -> i+1
        backward = [self.flow(grays[i + 1], grays[i]) for i in range(len(grays) - 1)]  # i+1 -> i
        if count <= 1:
            return []
        # Previous keyframe: chain t->t-1->...->0.
        to_prev: list[tuple[np.ndarray, np.ndarray]] = [
            (np.zeros_like(backward[0]), np.ones(grays[0].shape, np.float32))
        ]
        for t in range(1, count):
            step_valid = self.consistent(backward[t - 1], forward[t - 1])
            to_prev.append(self._compose(backward[t - 1], step_valid, *to_prev[t - 1]))
        # Next keyframe: chain t->t+1->...->n.
        to_next: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        if segment.next_frame is not None:
            to_next[count] = (np.zeros_like(forward[0]), np.ones(grays[0].shape, np.float32))
            for t in range(count - 1, 0, -1):
                step_valid = self.consistent(forward[t], backward[t])
                to_next[t] = self._compose(forward[t], step_valid, *to_next[t + 1])
        warps: list[FrameWarp] = []
        for offset in range(1, count):
            prev = self._direction(*to_prev[offset])
            if segment.next_frame is None:
                warps.append(FrameWarp(segment.start + offset, prev, None, prev.valid, None))
                continue
            nxt = self._direction(*to_next[offset])
            w_prev = prev.valid * np.float32((count - offset) / count)
            w_next = nxt.valid * np.float32(offset / count)
            total = w_prev + w_next
            safe = np.where(total > 0, total, 1.0)
            warps.append(FrameWarp(segment.start + offset, prev, nxt, w_prev / safe, w_next / safe))
        return warps

    @staticmethod
    def warp(image: np.ndarray, direction: DirectionalWarp) -> np.ndarray:
        return cv2.remap(image, direction.map_x, direction.map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def residual_at(self, warp: FrameWarp, residual_prev: np.ndarray, residual_next: np.ndarray | None) -> np.ndarray:
        """The edit residual carried to ``warp.frame`` (float32 (H, W, 3); 0 where untrusted)."""
        out = self.warp(residual_prev, warp.prev) * warp.weight_prev[..., None]
        if warp.next is not None and residual_next is not None:
            out += self.warp(residual_next, warp.next) * warp.weight_next[..., None]
        return out


def residual(edited: np.ndarray, original: np.ndarray) -> np.ndarray:
    return edited.astype(np.float32) - original.astype(np.float32)


def apply_residual(original: np.ndarray, res: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    """``original + residual`` as uint8, with pixels outside ``allowed`` copied from the original."""
    out = np.clip(np.rint(original.astype(np.float32) + res), 0, 255).astype(np.uint8)
    if allowed is not None:
        out = np.where(np.asarray(allowed, dtype=bool)[..., None], out, original)
    return out


def propagate_segment(
    propagator: FlowPropagator,
    segment: Segment,
    warps: Sequence[FrameWarp],
    edited_prev: np.ndarray,
    edited_next: np.ndarray | None,
    allowed: Callable[[int], np.ndarray | None] | None = None,
) -> list[np.ndarray]:
    """Edited frames ``segment.start .. segment.stop - 1`` from the two keyframe edits."""
    res_prev = residual(edited_prev, segment.frames[0])
    res_next = (
        residual(edited_next, segment.next_frame)
        if edited_next is not None and segment.next_frame is not None
        else None
    )
    mask_of = allowed or (lambda _index: None)
    out = [apply_residual(segment.frames[0], res_prev, mask_of(segment.start))]
    for warp, frame in zip(warps, segment.frames[1:], strict=False):
        if not res_prev.any() and (res_next is None or not res_next.any()):
            out.append(frame.copy())
            continue
        out.append(apply_residual(frame, propagator.residual_at(warp, res_prev, res_next), mask_of(warp.frame)))
    return out


def propagate_edits(
    frames: Iterable[np.ndarray],
    scene_ranges: Sequence[tuple[int, int]],
    stride: int,
    edit_keyframe: Callable[[int, np.ndarray], np.ndarray] | Mapping[int, np.ndarray],
    allowed: Callable[[int], np.ndarray | None] | None = None,
    propagator: FlowPropagator | None = None,
) -> Iterator[np.ndarray]:
    """Stream the edited video: keyframes edited by ``edit_keyframe(index, frame)``, the rest propagated.

    ``edit_keyframe`` may be a mapping ``{keyframe index: edited frame}``. Each keyframe is edited
    once even though it bounds two segments.
    """
    propagator = propagator or FlowPropagator()
    cache: dict[int, np.ndarray] = {}

    def edited(index: int, frame: np.ndarray) -> np.ndarray:
        if index not in cache:
            if isinstance(edit_keyframe, Mapping):
                if index not in edit_keyframe:
                    raise KeyError(f"no edited frame given for keyframe {index}")
                cache[index] = np.asarray(edit_keyframe[index])
            else:
                cache[index] = np.asarray(edit_keyframe(index, frame))
            if cache[index].shape != frame.shape or cache[index].dtype != np.uint8:
                raise ValueError(
                    f"edited keyframe {index} is {cache[index].dtype} {cache[index].shape}, expected uint8 {frame.shape}"
                )
        return cache[index]

    for segment in iter_segments(frames, scene_ranges, stride):
        warps = propagator.plan_segment(segment)
        edited_prev = edited(segment.start, segment.frames[0])
        edited_next = edited(segment.stop, segment.next_frame) if segment.next_frame is not None else None
        yield from propagate_segment(propagator, segment, warps, edited_prev, edited_next, allowed)
        cache.pop(segment.start, None)
