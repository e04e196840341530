"""Finding an annotated product again after it left the frame or was covered.

Flow carries a mask only while the product stays in view: once a hand lifts it out, or it
leaves through the frame edge, the carried mask is empty and stays empty. :class:`ProductSearch`
looks for the product in later frames by its appearance on the annotated frames: each annotated
frame's product crop is a template, matched with ``cv2.matchTemplate`` (``TM_CCOEFF_NORMED``,
so brightness and contrast changes do not matter) on the frame reduced to ``max_side`` at
several scales; the best peaks are refined at the working size in a small window.

A match counts only with confidence:

- its normalised correlation is at least ``min_score``. 0.75 was chosen on
  ``intel_bottle-detection.mp4`` (box on frame 0, searched at 256 px): the bottle back in place
  scores 0.86-0.87, the empty wall and table where it stood 0.60-0.61, a hand putting it down
  0.66; the two identical bottles beside it 0.83;
- it is not a look-alike: places where the template matched (at ``min_score``) on the annotated
  frames themselves, away from the product, hold another copy of it (the bottles beside the
  product), and a match there is refused unless it overlaps a known product place (an annotated
  box or where the carry last held it) more than the look-alike;
- (in :mod:`align_core.perception.annotated_masks`) the placed mask, snapped to the product's
  colour models, keeps enough area and its colours look more like the product than like its
  surroundings on the annotated frame.

The search runs only while the product is lost, on every ``search_every``-th frame, so a clip
where it is gone costs one reduced-size match per template and scale every few frames instead of
a DIS flow pair per frame.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from align_core.io.atomic import atomic_path

__all__ = [
    "Match",
    "ProductSearch",
    "absent_ranges",
    "save_absent_strip",
]

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Match:
    """A confident match of the product: its box and placed mask at the working size."""

    key: int  # local index of the annotated frame whose template matched
    box: Box
    score: float
    mask: np.ndarray  # float32 (work_h, work_w)


@dataclass(frozen=True)
class _Template:
    key: int
    patch: np.ndarray  # uint8 RGB crop at the working size
    mask: np.ndarray  # float32 mask in the crop
    box: Box


def _iou(a: Box, b: Box) -> float:
    iw = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _peaks(scores: np.ndarray, size: tuple[int, int], floor: float, count: int) -> list[tuple[float, int, int]]:
    """Up to ``count`` local maxima ``(score, x, y)`` at least ``floor``, a template size apart."""
    scores = np.nan_to_num(scores, nan=-1.0, posinf=-1.0, neginf=-1.0).copy()
    w, h = size
    out = []
    for _ in range(count):
        _, best, _, (x, y) = cv2.minMaxLoc(scores)
        if best < floor:
            break
        out.append((float(best), int(x), int(y)))
        scores[max(0, y - h // 2) : y + h // 2 + 1, max(0, x - w // 2) : x + w // 2 + 1] = -1.0
    return out


class ProductSearch:
    """Template search for the product of a scene's annotated frames (see the module docstring)."""

    def __init__(
        self,
        smalls: Sequence[np.ndarray],
        seeds: dict[int, np.ndarray],
        *,
        max_side: int = 256,
        scales: Sequence[float] = (0.8, 0.9, 1.0, 1.12, 1.25),
        min_score: float = 0.75,
        lookalike_iou: float = 0.3,
    ):
        self.min_score = min_score
        self.lookalike_iou = lookalike_iou
        self.scales = tuple(scales)
        height, width = smalls[0].shape[:2]
        self.shape = (height, width)
        self.reduce = min(1.0, max_side / max(height, width))
        self.templates = [t for key, mask in sorted(seeds.items()) if (t := _template(smalls[key], mask, key))]
        self.places: list[Box] = [t.box for t in self.templates]
        self.lookalikes: list[Box] = []
        for template in self.templates:
            for _, box, _ in self._coarse(smalls[template.key], template):
                if _iou(box, template.box) < 0.1:
                    self.lookalikes.append(box)

    def remember(self, box: Box | None) -> None:
        """Where the carry last held the product: a match there is the product, not a look-alike."""
        if box is not None and box not in self.places:
            self.places.append(box)

    def find(self, frame: np.ndarray) -> Match | None:
        """The most confident match of any template on ``frame`` (working size), or None."""
        best: Match | None = None
        for template in self.templates:
            for _, box, scale in self._coarse(frame, template):
                if not self._plausible(box):
                    continue
                score, box = self._refine(frame, template, box, scale)
                if score >= self.min_score and self._plausible(box) and (best is None or score > best.score):
                    best = Match(template.key, box, score, self._place(template, box))
        return best

    def _plausible(self, box: Box) -> bool:
        near_lookalike = max((_iou(box, b) for b in self.lookalikes), default=0.0)
        near_product = max((_iou(box, b) for b in self.places), default=0.0)
        return near_lookalike < self.lookalike_iou or near_product >= near_lookalike

    def _coarse(self, frame: np.ndarray, template: _Template) -> list[tuple[float, Box, float]]:
        """Peaks ``(score, box at working size, scale)`` of every scale on the reduced frame."""
        r = self.reduce
        small = frame if r == 1.0 else cv2.resize(frame, None, fx=r, fy=r, interpolation=cv2.INTER_AREA)
        found: list[tuple[float, Box, float]] = []
        for scale in self.scales:
            tw = int(round(template.box[2] * r * scale))
            th = int(round(template.box[3] * r * scale))
            if min(tw, th) < 4 or tw > small.shape[1] or th > small.shape[0]:
                continue
            patch = cv2.resize(template.patch, (tw, th), interpolation=cv2.INTER_AREA)
            scores = cv2.matchTemplate(small, patch, cv2.TM_CCOEFF_NORMED)
            for score, x, y in _peaks(scores, (tw, th), self.min_score, 4):
                box = (int(round(x / r)), int(round(y / r)), int(round(tw / r)), int(round(th / r)))
                found.append((score, box, scale))
        found.sort(key=lambda item: -item[0])
        kept: list[tuple[float, Box, float]] = []
        for item in found:  # one peak per place, the best scale's
            if all(_iou(item[1], other[1]) < 0.3 for other in kept):
                kept.append(item)
        return kept

    def _refine(self, frame: np.ndarray, template: _Template, box: Box, scale: float) -> tuple[float, Box]:
        """The coarse peak re-matched at the working size in a window around it (three nearby scales)."""
        height, width = self.shape
        pad = int(np.ceil(2 / self.reduce)) + 2
        best = (-1.0, box)
        for step in (0.95, 1.0, 1.05):
            tw = max(4, int(round(template.box[2] * scale * step)))
            th = max(4, int(round(template.box[3] * scale * step)))
            x0, y0 = max(0, box[0] - pad), max(0, box[1] - pad)
            x1, y1 = min(width, box[0] + box[2] + pad), min(height, box[1] + box[3] + pad)
            if tw > x1 - x0 or th > y1 - y0:
                continue
            patch = cv2.resize(template.patch, (tw, th), interpolation=cv2.INTER_AREA)
            scores = cv2.matchTemplate(frame[y0:y1, x0:x1], patch, cv2.TM_CCOEFF_NORMED)
            _, score, _, (x, y) = cv2.minMaxLoc(np.nan_to_num(scores, nan=-1.0))
            if score > best[0]:
                best = (float(score), (x0 + x, y0 + y, tw, th))
        return best

    def _place(self, template: _Template, box: Box) -> np.ndarray:
        """The template's mask scaled into ``box`` on an empty working-size frame (clipped at the edges)."""
        height, width = self.shape
        x, y, w, h = box
        out = np.zeros((height, width), np.float32)
        mask = cv2.resize(template.mask, (w, h), interpolation=cv2.INTER_LINEAR)
        x0, y0, x1, y1 = max(0, x), max(0, y), min(width, x + w), min(height, y + h)
        if x1 > x0 and y1 > y0:
            out[y0:y1, x0:x1] = mask[y0 - y : y1 - y, x0 - x : x1 - x]
        return out


def _template(frame: np.ndarray, mask: np.ndarray, key: int) -> _Template | None:
    """The product's crop (its mask's bounding box) on an annotated frame, or None without a product."""
    on = mask > 0.5
    ys, xs = np.nonzero(on)
    if xs.size < 16:
        return None
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    if min(x1 - x0, y1 - y0) < 4:
        return None
    patch = np.ascontiguousarray(frame[y0:y1, x0:x1])
    return _Template(key, patch, on[y0:y1, x0:x1].astype(np.float32), (x0, y0, x1 - x0, y1 - y0))


def absent_ranges(frames: Sequence[int]) -> list[tuple[int, int]]:
    """Runs of consecutive frame numbers as inclusive ``(first, last)`` pairs."""
    runs: list[tuple[int, int]] = []
    for frame in sorted(int(f) for f in frames):
        if runs and frame == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], frame)
        else:
            runs.append((frame, frame))
    return runs


def save_absent_strip(
    path: str | os.PathLike[str], thumbnails: dict[int, np.ndarray] | None, height: int = 72
) -> Path | None:
    """A PNG strip of frames where the product was not found, each labelled with its frame number
    (atomically), or remove a stale strip when there are none."""
    path = Path(path)
    if not thumbnails:
        path.unlink(missing_ok=True)
        return None
    tiles = []
    for frame in sorted(thumbnails):
        rgb = thumbnails[frame]
        width = max(8, int(round(rgb.shape[1] * height / rgb.shape[0])))
        tile = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)[..., ::-1].copy()
        cv2.putText(tile, str(frame), (3, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 255), 1, cv2.LINE_AA)
        tiles.append(np.pad(tile, ((0, 0), (0, 2), (0, 0)), constant_values=255))
    ok, encoded = cv2.imencode(".png", np.hstack(tiles))
    if not ok:
        raise OSError(f"could not encode the absent-frames strip {path}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())
    return path
