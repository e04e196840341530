"""Protected regions per frame: pixels no variant may edit (text overlays, faces, user regions).

A variant is a research stimulus that may differ from baseline only in where attention goes, so
the ad's information (captions, prices, offers, calls to action), faces and whatever the user
marks stay untouched: the renderer copies these pixels from the source after editing
(``out[protect] = source[protect]``), and :mod:`align_core.measurement.stimulus_checks` measures that they
survived (PSNR against baseline, identical OCR strings).

Sources of protection, all stored as boxes per frame (plus user mask PNGs as bits):

- ``text``: PP-OCRv4 detection + recognition (ONNX models inside the ``rapidocr-onnxruntime``
  wheel, run on CPU by onnxruntime; nothing is downloaded). Recognised strings are kept per
  detection, so the information check can compare them with what a variant shows.
- ``face``: no trained face detector installs here with its weights inside its package
  (opencv-python 5 ships no Haar cascades; current mediapipe wheels ship no models and pull in
  opencv-contrib-python, which would replace opencv-python; the others download weights at run
  time). Faces are therefore NOT detected; :data:`FACE_DETECTOR_STATUS` says so in every
  output's metadata, and users protect faces with their own regions.
- ``user``: boxes and mask PNGs from a file beside the inputs (see :func:`read_user_regions`):

  ``data/raw/protect.csv`` with the header ``video_id,scene_number,start_frame,end_frame,x0,y0,x1,y1,label``:
  one box per row in the source video's pixels (``x1``/``y1`` exclusive); it applies to the
  scene ``scene_number`` (the ``alignment_score.csv`` / catalog scene number), or to frames
  ``start_frame`` .. ``end_frame - 1``, or, with all three empty, to every frame. Read like every
  input CSV (:mod:`align_core.inputs.csv_rows`: cells as text, bad cells named by line and
  column); ``video id`` and ``scene`` are accepted for ``video_id`` and ``scene_number``, as in
  ``annotations.csv``.

  ``data/raw/protect/<video_id>/*.png``: a mask at the video's size (non-zero = protected);
  ``scene_<n>.png`` applies to scene n, ``frames_<start>-<end>.png`` to frames start..end-1,
  any other name to every frame.

Detection runs on keyframes only, at an analysis resolution (longer side at most
``analysis_max_side``): the first frame of every scene, every ``stride``-th frame after it, and
the scene's last frame. Carry rule (conservative): every frame ``t`` with ``k_i <= t < k_{i+1}``
(consecutive keyframes of one scene) is protected by the UNION of the boxes detected at ``k_i``
and at ``k_{i+1}``, plus, for text read identically at both, the box spanning both positions (a
caption that slides between keyframes stays covered); the scene's last frame by its own and its
previous keyframe's boxes. Every box is then dilated by ``margin`` of the shorter side plus
``box_margin`` of its own height (codec blocks and anti-aliased outlines reach past the glyphs).
Nothing is carried across a scene cut. Text shown for less than one stride between two
keyframes that both miss it is not protected: lower ``stride_s`` or add a user region.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from align_core.inputs.csv_rows import COLUMN_ALIASES, CsvValidationError, RowCells, read_text_table
from align_core.io.arrays import pack_masks, save_npz_atomic, unpack_masks
from align_core.io.atomic import atomic_path, atomic_write_text
from align_core.io.video_io import iter_frames, probe_video

__all__ = [
    "FACE_DETECTOR_STATUS",
    "ProtectConfig",
    "ProtectedRegions",
    "TextDetection",
    "TextReader",
    "USER_CSV_COLUMNS",
    "UserRegions",
    "carry_text_boxes",
    "covering_units",
    "detect_protected_regions",
    "detection_keyframes",
    "load_protected_regions",
    "read_user_regions",
]

FACE_DETECTOR_STATUS = (
    "faces NOT detected: no trained face detector installs here with its weights inside its package "
    "(opencv-python 5 ships no Haar cascades; mediapipe wheels ship no models; others download weights); "
    "protect faces with user regions (data/raw/protect.csv or data/raw/protect/<video_id>/*.png)"
)
USER_CSV_COLUMNS = ("video_id", "scene_number", "start_frame", "end_frame", "x0", "y0", "x1", "y1", "label")
_USER_NUMBER_COLUMNS = ("scene_number", "start_frame", "end_frame", "x0", "y0", "x1", "y1")
BOX_COLUMNS = ("frame", "x0", "y0", "x1", "y1", "source", "label", "score")
OCR_COLUMNS = ("frame", "x0", "y0", "x1", "y1", "text", "score", "polygon")

BOXES_FILE = "boxes.parquet"
OCR_FILE = "ocr.parquet"
USER_MASKS_FILE = "user_masks.npz"
META_FILE = "protected_regions.json"


@dataclass(frozen=True)
class ProtectConfig:
    """How protected regions are found and carried (lengths are fractions of the shorter side)."""

    detect_text: bool = True
    analysis_max_side: int = 960  # OCR sees the frame scaled so its longer side is at most this
    stride_s: float = 0.5  # detect every this many seconds within a scene (plus scene starts and ends)
    margin: float = 0.01  # dilation of every box, fraction of the frame's shorter side
    box_margin: float = 0.15  # extra dilation, fraction of the box's own height
    text_min_score: float = 0.5  # recognition confidence below which a detection is dropped
    threads: int = 1  # onnxruntime intra-op threads

    def stride_frames(self, fps: float) -> int:
        return max(1, int(round(self.stride_s * fps)))


@dataclass(frozen=True)
class TextDetection:
    """One detected line of text, in source pixels (``x1``/``y1`` exclusive)."""

    x0: int
    y0: int
    x1: int
    y1: int
    text: str
    score: float
    polygon: tuple[tuple[float, float], ...] = ()


class TextReader:
    """PP-OCRv4 text detection + recognition via rapidocr-onnxruntime, at an analysis resolution.

    The ONNX models load from inside the installed package (``rapidocr_onnxruntime/models``);
    :meth:`lineage` records their file names and sha256.
    """

    def __init__(self, analysis_max_side: int = 960, min_score: float = 0.5, threads: int = 1):
        from rapidocr_onnxruntime import RapidOCR

        self.analysis_max_side = int(analysis_max_side)
        self.min_score = float(min_score)
        self.threads = int(threads)
        # limit_type "max": the detector never upscales; frames arrive already at the analysis size.
        self._ocr = RapidOCR(
            intra_op_num_threads=self.threads,
            inter_op_num_threads=1,
            det_limit_side_len=self.analysis_max_side,
            det_limit_type="max",
            text_score=self.min_score,
        )

    def read(self, frame: np.ndarray) -> list[TextDetection]:
        """Text lines in an RGB uint8 frame, boxes in the frame's own pixels, top to bottom."""
        height, width = frame.shape[:2]
        scale = min(1.0, self.analysis_max_side / max(height, width))
        small = (
            frame
            if scale >= 1.0
            else cv2.resize(
                frame, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
            )
        )
        # The models expect BGR. The 180-degree classifier is off: overlays are upright, and on the demo
        # ads it flipped upright text (a "$15.99" tag read as "66'915", a caption read as "").
        result, _ = self._ocr(np.ascontiguousarray(small[..., ::-1]), use_cls=False)
        out: list[TextDetection] = []
        for polygon, text, score in result or []:
            if float(score) < self.min_score or not str(text).strip():
                continue
            points = np.asarray(polygon, dtype=np.float64) / scale
            x0, y0 = np.floor(points.min(axis=0)).astype(int)
            x1, y1 = np.ceil(points.max(axis=0)).astype(int) + 1
            out.append(
                TextDetection(
                    int(np.clip(x0, 0, width)),
                    int(np.clip(y0, 0, height)),
                    int(np.clip(x1, 0, width)),
                    int(np.clip(y1, 0, height)),
                    str(text),
                    float(score),
                    tuple((round(float(x), 1), round(float(y), 1)) for x, y in points),
                )
            )
        out.sort(key=lambda d: (d.y0, d.x0))
        return out

    def recognize(self, frame: np.ndarray, box: tuple[int, int, int, int]) -> str:
        """Recognition only (no detection) of the text inside ``box`` (x0, y0, x1, y1) of an RGB frame.

        Reading the same box in two frames compares their text without the detector's own
        frame-to-frame flakiness (a caption detected at score 0.51 in one and 0.49 in the other).
        """
        x0, y0, x1, y1 = box
        pad = max(2, (y1 - y0) // 4)  # context around the glyphs, as the detector's own unclip gives
        crop = frame[max(0, y0 - pad) : y1 + pad, max(0, x0 - pad) : x1 + pad]
        if crop.size == 0:
            return ""
        result, _ = self._ocr(np.ascontiguousarray(crop[..., ::-1]), use_det=False, use_cls=False)
        return " ".join(str(text) for text, _score in (result or []))

    def lineage(self) -> dict[str, Any]:
        import rapidocr_onnxruntime

        models = Path(rapidocr_onnxruntime.__file__).parent / "models"
        files = {}
        for path in sorted(models.glob("*.onnx")):
            with path.open("rb") as handle:
                files[path.name] = hashlib.file_digest(handle, "sha256").hexdigest()
        return {
            "detector": "PP-OCRv4 det + rec (rapidocr-onnxruntime, onnxruntime CPU); angle classifier not used",
            "package": f"rapidocr-onnxruntime=={importlib_metadata.version('rapidocr-onnxruntime')}",
            "onnxruntime": importlib_metadata.version("onnxruntime"),
            "models": files,
            "weights": "trained PP-OCRv4 weights shipped inside the package",
            "analysis_max_side": self.analysis_max_side,
            "min_score": self.min_score,
        }


# -- user regions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserBox:
    start: int  # first frame
    stop: int  # one past the last frame
    x0: int
    y0: int
    x1: int
    y1: int
    label: str
    origin: str  # file and line, for messages


@dataclass
class UserRegions:
    boxes: list[UserBox] = field(default_factory=list)
    masks: list[tuple[int, int, np.ndarray, str]] = field(default_factory=list)  # (start, stop, bool mask, file)

    @property
    def empty(self) -> bool:
        return not self.boxes and not self.masks


def _frames_for(
    scene: int | None,
    start: int | None,
    stop: int | None,
    scenes: Mapping[int, tuple[int, int]],
    frame_count: int,
    where: str,
) -> tuple[int, int]:
    if scene is not None:
        if start is not None or stop is not None:
            raise ValueError(f"{where}: give scene_number OR start_frame/end_frame, not both")
        if scene not in scenes:
            raise ValueError(f"{where}: scene_number {scene} is not a scene of this video (scenes {sorted(scenes)})")
        return scenes[scene]
    if (start is None) != (stop is None):
        raise ValueError(f"{where}: start_frame and end_frame go together")
    if start is None:
        return 0, frame_count
    if not 0 <= start < stop <= frame_count:
        raise ValueError(f"{where}: frames {start}..{stop} are not a range inside the video's {frame_count} frames")
    return start, stop


def read_user_regions(
    video_id: str,
    csv_path: str | os.PathLike[str] | None,
    mask_dir: str | os.PathLike[str] | None,
    frame_count: int,
    height: int,
    width: int,
    scenes: Mapping[int, tuple[int, int]],
) -> UserRegions:
    """The user's protect regions for ``video_id`` (formats in the module docstring).

    Only rows of this video are read, so a bad row fails its own video and no other. Every error
    names the file, the line or mask, and what is wrong: unreadable cells raise
    :class:`~align_core.inputs.csv_rows.CsvValidationError` (every bad row of the video), a box
    that does not fit the video a ``ValueError``.
    """
    regions = UserRegions()
    if csv_path is not None and Path(csv_path).exists():
        path = Path(csv_path)
        for cells, numbers in _user_csv_rows(path, video_id):
            regions.boxes.append(_user_box(cells, numbers, path, scenes, frame_count, height, width))
    if mask_dir is not None and Path(mask_dir).is_dir():
        for path in sorted(Path(mask_dir).glob("*.png")):
            regions.masks.append(_user_mask(path, video_id, scenes, frame_count, height, width))
    return regions


def _user_csv_rows(path: Path, video_id: str) -> list[tuple[RowCells, dict[str, int | None]]]:
    """This video's rows of ``protect.csv`` with their whole numbers; raises naming every bad cell."""
    frame = read_text_table(path, ("video_id", "x0", "y0", "x1", "y1"), aliases=COLUMN_ALIASES)
    rows, problems = [], []
    for record in frame.to_dict("records"):
        if str(record["video_id"]).strip() != video_id:
            continue
        cells = RowCells(record, int(record["_line"]), video_id, frame.attrs["file_columns"])
        numbers = {column: cells.whole_number(column) for column in _USER_NUMBER_COLUMNS}
        for column in ("x0", "y0", "x1", "y1"):
            if not cells.text(column):
                cells.problem("is required (x0, y0, x1, y1 give the box)", column, "")
        problems.extend(cells.problems)
        rows.append((cells, numbers))
    if problems:
        raise CsvValidationError(path, problems)
    return rows


def _user_box(
    cells: RowCells,
    numbers: Mapping[str, int | None],
    path: Path,
    scenes: Mapping[int, tuple[int, int]],
    frame_count: int,
    height: int,
    width: int,
) -> UserBox:
    """A parsed row as a box on its frames; raises when it does not fit the video."""
    where = f"{path} line {cells.line} (video {cells.video_id})"
    x0, y0, x1, y1 = (numbers[c] for c in ("x0", "y0", "x1", "y1"))
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise ValueError(
            f"{where}: box ({x0}, {y0}, {x1}, {y1}) is not inside the {width}x{height} frame with x0 < x1, y0 < y1"
        )
    start, stop = _frames_for(
        numbers["scene_number"], numbers["start_frame"], numbers["end_frame"], scenes, frame_count, where
    )
    return UserBox(start, stop, x0, y0, x1, y1, cells.text("label") or "user box", where)


def _user_mask(
    path: Path, video_id: str, scenes: Mapping[int, tuple[int, int]], frame_count: int, height: int, width: int
) -> tuple[int, int, np.ndarray, str]:
    """A protect mask PNG as (start, stop, bool mask, file); the file name says which frames."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"protect mask {path} (video {video_id}): not a readable PNG")
    if image.shape[:2] != (height, width):
        raise ValueError(
            f"protect mask {path} (video {video_id}): {image.shape[1]}x{image.shape[0]}, the video is {width}x{height}"
        )
    mask = (image.max(axis=2) if image.ndim == 3 else image) > 0
    scene_match = re.fullmatch(r"scene_(\d+)", path.stem)
    range_match = re.fullmatch(r"frames_(\d+)-(\d+)", path.stem)
    where = f"protect mask {path} (video {video_id})"
    if scene_match:
        start, stop = _frames_for(int(scene_match.group(1)), None, None, scenes, frame_count, where)
    elif range_match:
        start, stop = _frames_for(
            None, int(range_match.group(1)), int(range_match.group(2)), scenes, frame_count, where
        )
    else:
        start, stop = 0, frame_count
    return start, stop, mask, str(path)


# -- keyframes and carry ---------------------------------------------------------------------------


def covering_units(scene_ranges: Sequence[tuple[int, int]], frame_count: int) -> list[tuple[int, int]]:
    """Scene ranges plus any gaps between them, so every frame belongs to exactly one unit."""
    units, cursor = [], 0
    for start, stop in sorted((int(a), int(b)) for a, b in scene_ranges):
        start, stop = max(start, cursor), min(stop, frame_count)
        if start > cursor:
            units.append((cursor, start))
        if stop > start:
            units.append((start, stop))
            cursor = stop
    if cursor < frame_count:
        units.append((cursor, frame_count))
    return units


def detection_keyframes(units: Sequence[tuple[int, int]], stride: int) -> list[list[int]]:
    """Per unit: its first frame, every ``stride``-th frame after it, and its last frame."""
    out = []
    for start, stop in units:
        frames = list(range(start, stop, max(1, stride)))
        if frames[-1] != stop - 1:
            frames.append(stop - 1)
        out.append(frames)
    return out


def _dilate(
    box: tuple[int, int, int, int], margin_px: int, box_margin: float, width: int, height: int
) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    pad = margin_px + int(round(box_margin * (y1 - y0)))
    return max(0, x0 - pad), max(0, y0 - pad), min(width, x1 + pad), min(height, y1 + pad)


def carry_text_boxes(
    detections: Mapping[int, Sequence[TextDetection]],
    keyframes_per_unit: Sequence[Sequence[int]],
    margin_px: int,
    box_margin: float,
    width: int,
    height: int,
) -> list[dict[str, Any]]:
    """Box rows (``BOX_COLUMNS``) for every frame by the carry rule of the module docstring."""
    rows: list[dict[str, Any]] = []
    for keys in keyframes_per_unit:
        pairs = (
            [(keys[0], keys[0], range(keys[0], keys[0] + 1))]
            if len(keys) == 1
            else [
                (a, b, range(a, b + 1 if i == len(keys) - 2 else b))
                for i, (a, b) in enumerate(zip(keys[:-1], keys[1:], strict=False))
            ]
        )
        for first, second, frames in pairs:
            found = list(detections.get(first, ())) + (list(detections.get(second, ())) if second != first else [])
            boxes = [((d.x0, d.y0, d.x1, d.y1), d.text, d.score) for d in found]
            if second != first:
                for a in detections.get(first, ()):
                    for b in detections.get(second, ()):
                        if a.text == b.text:  # the same caption at both ends: cover the way between
                            hull = (min(a.x0, b.x0), min(a.y0, b.y0), max(a.x1, b.x1), max(a.y1, b.y1))
                            boxes.append((hull, a.text, min(a.score, b.score)))
            unique: dict[tuple[tuple[int, int, int, int], str], float] = {}
            for box, text, score in boxes:
                unique.setdefault((_dilate(box, margin_px, box_margin, width, height), text), score)
            for frame in frames:
                for (box, text), score in unique.items():
                    rows.append(
                        {
                            "frame": frame,
                            "x0": box[0],
                            "y0": box[1],
                            "x1": box[2],
                            "y1": box[3],
                            "source": "text",
                            "label": text,
                            "score": float(score),
                        }
                    )
    return rows


# -- the regions ------------------------------------------------------------------------------------


@dataclass
class ProtectedRegions:
    """Protected boxes per frame (+ user mask PNGs), OCR detections at keyframes, and lineage."""

    video_id: str
    frame_count: int
    height: int
    width: int
    boxes: pd.DataFrame  # BOX_COLUMNS, one row per (frame, box)
    ocr: pd.DataFrame  # OCR_COLUMNS, detections at keyframes (undilated)
    keyframes: tuple[int, ...]
    user_masks: np.ndarray = field(default_factory=lambda: np.zeros((0, 1, 1), bool))  # (K, H, W)
    user_mask_ranges: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))  # (K, 2): start, stop
    lineage: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def _boxes_by_frame(self) -> dict[int, np.ndarray]:
        if self.boxes.empty:
            return {}
        coords = self.boxes[["frame", "x0", "y0", "x1", "y1"]].to_numpy(dtype=np.int64)
        order = np.argsort(coords[:, 0], kind="stable")
        coords = coords[order]
        frames, starts = np.unique(coords[:, 0], return_index=True)
        return {int(f): part[:, 1:] for f, part in zip(frames, np.split(coords, starts[1:]), strict=False)}

    def mask(self, index: int) -> np.ndarray:
        """bool ``(H, W)``: True where frame ``index`` must not be edited."""
        if not 0 <= index < self.frame_count:
            raise IndexError(f"video {self.video_id}: frame {index} outside 0..{self.frame_count - 1}")
        out = np.zeros((self.height, self.width), dtype=bool)
        for x0, y0, x1, y1 in self._boxes_by_frame.get(int(index), ()):
            out[y0:y1, x0:x1] = True
        for (start, stop), user in zip(self.user_mask_ranges, self.user_masks, strict=False):
            if start <= index < stop:
                out |= user
        return out

    def __len__(self) -> int:
        return self.frame_count

    def __getitem__(self, index: int) -> np.ndarray:
        return self.mask(int(index))

    def texts_at(self, index: int) -> list[str]:
        """Strings recognised at keyframe ``index`` (top to bottom); empty if not a keyframe or no text."""
        rows = self.ocr[self.ocr["frame"] == index]
        return [str(t) for t in rows.sort_values(["y0", "x0"])["text"]]

    def text_keyframes(self) -> list[int]:
        """Keyframes at which text was recognised."""
        return sorted(int(f) for f in self.ocr["frame"].unique())

    def protected_share(self) -> float:
        """Mean share of each frame's pixels that is protected."""
        total = sum(int(self.mask(i).sum()) for i in range(self.frame_count))
        return total / float(self.frame_count * self.height * self.width)

    def summary(self) -> dict[str, Any]:
        strings = sorted(set(self.ocr["text"])) if not self.ocr.empty else []
        return {
            "frames": self.frame_count,
            "keyframes": len(self.keyframes),
            "text_detections": int(len(self.ocr)),
            "distinct_strings": strings,
            "frames_with_protection": int(self.boxes["frame"].nunique()) if not self.boxes.empty else 0,
            "boxes_by_source": {k: int(v) for k, v in self.boxes.groupby("source").size().items()}
            if not self.boxes.empty
            else {},
            "user_masks": int(len(self.user_masks)),
            "faces": self.lineage.get("faces", FACE_DETECTOR_STATUS),
        }

    # -- storage --------------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike[str]) -> dict[str, Path]:
        """Boxes and OCR as Parquet, user masks as packed bits, lineage as JSON (each atomic)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = {
            "boxes": directory / BOXES_FILE,
            "ocr": directory / OCR_FILE,
            "user_masks": directory / USER_MASKS_FILE,
            "meta": directory / META_FILE,
        }
        for frame, name in ((self.boxes, "boxes"), (self.ocr, "ocr")):
            with atomic_path(paths[name]) as tmp:
                frame.assign(video_id=self.video_id).astype({"video_id": "string"}).to_parquet(tmp, index=False)
        packed = (
            pack_masks(self.user_masks)
            if len(self.user_masks)
            else {"bits": np.zeros(0, np.uint8), "shape": np.array([0, self.height, self.width])}
        )
        save_npz_atomic(
            paths["user_masks"], ranges=np.asarray(self.user_mask_ranges, np.int64).reshape(-1, 2), **packed
        )
        meta = {
            "video_id": self.video_id,
            "frame_count": self.frame_count,
            "height": self.height,
            "width": self.width,
            "keyframes": list(self.keyframes),
            "lineage": self.lineage,
        }
        atomic_write_text(paths["meta"], json.dumps(meta, indent=1, default=str))
        return paths


def load_protected_regions(directory: str | os.PathLike[str]) -> ProtectedRegions:
    """Read what :meth:`ProtectedRegions.save` wrote; errors name the file."""
    directory = Path(directory)
    meta_path = directory / META_FILE
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path} does not exist: materialize protected_regions first")
    meta = json.loads(meta_path.read_text())
    boxes = pd.read_parquet(directory / BOXES_FILE).drop(columns=["video_id"], errors="ignore")
    ocr = pd.read_parquet(directory / OCR_FILE).drop(columns=["video_id"], errors="ignore")
    with np.load(directory / USER_MASKS_FILE, allow_pickle=False) as data:
        shape = data["shape"]
        masks = (
            unpack_masks(data["bits"], shape) if int(shape[0]) else np.zeros((0, meta["height"], meta["width"]), bool)
        )
        ranges = data["ranges"]
    return ProtectedRegions(
        video_id=str(meta["video_id"]),
        frame_count=int(meta["frame_count"]),
        height=int(meta["height"]),
        width=int(meta["width"]),
        boxes=boxes,
        ocr=ocr,
        keyframes=tuple(meta["keyframes"]),
        user_masks=masks,
        user_mask_ranges=ranges,
        lineage=meta.get("lineage", {}),
    )


def detect_protected_regions(
    video_id: str,
    video_path: str | os.PathLike[str],
    scene_ranges: Sequence[tuple[int, int]],
    user: UserRegions | None = None,
    config: ProtectConfig = ProtectConfig(),
    reader: TextReader | None = None,
) -> ProtectedRegions:
    """Detect text on keyframes, carry boxes by the module's rule, add the user's regions.

    Streams the video once (only keyframes go to the detector); memory does not grow with length.
    """
    started = time.perf_counter()
    probe = probe_video(video_path)
    count, height, width = probe.frame_count, probe.height, probe.width
    units = covering_units(scene_ranges, count)
    keys_per_unit = detection_keyframes(units, config.stride_frames(probe.fps))
    keyframes = sorted({k for keys in keys_per_unit for k in keys})
    wanted = set(keyframes)
    detections: dict[int, list[TextDetection]] = {}
    ocr_seconds = 0.0
    if config.detect_text:
        reader = reader or TextReader(config.analysis_max_side, config.text_min_score, config.threads)
        for index, frame in enumerate(iter_frames(video_path)):
            if index in wanted:
                t0 = time.perf_counter()
                detections[index] = reader.read(frame)
                ocr_seconds += time.perf_counter() - t0
    margin_px = max(1, int(round(config.margin * min(height, width))))
    rows = carry_text_boxes(detections, keys_per_unit, margin_px, config.box_margin, width, height)
    user = user or UserRegions()
    for box in user.boxes:
        rows.extend(
            {
                "frame": f,
                "x0": box.x0,
                "y0": box.y0,
                "x1": box.x1,
                "y1": box.y1,
                "source": "user",
                "label": box.label,
                "score": 1.0,
            }
            for f in range(box.start, box.stop)
        )
    boxes = pd.DataFrame(rows, columns=list(BOX_COLUMNS)).astype(
        {"frame": "int64", "x0": "int32", "y0": "int32", "x1": "int32", "y1": "int32", "score": "float32"}
    )
    ocr_rows = [
        {
            "frame": f,
            "x0": d.x0,
            "y0": d.y0,
            "x1": d.x1,
            "y1": d.y1,
            "text": d.text,
            "score": d.score,
            "polygon": json.dumps(d.polygon),
        }
        for f, found in sorted(detections.items())
        for d in found
    ]
    ocr = pd.DataFrame(ocr_rows, columns=list(OCR_COLUMNS)).astype({"frame": "int64", "score": "float32"})
    user_masks = np.stack([m for _, _, m, _ in user.masks]) if user.masks else np.zeros((0, height, width), bool)
    ranges = np.asarray([(a, b) for a, b, _, _ in user.masks], dtype=np.int64).reshape(-1, 2)
    lineage = {
        "text": reader.lineage() if reader is not None else "text detection off",
        "faces": FACE_DETECTOR_STATUS,
        "user": {"boxes": [asdict(b) for b in user.boxes], "masks": [p for _, _, _, p in user.masks]},
        "config": asdict(config),
        "stride_frames": config.stride_frames(probe.fps),
        "margin_px": margin_px,
        "carry_rule": "union of the bracketing keyframes' boxes (+ span of text read identically at both), dilated; never across a cut",
        "units": [list(u) for u in units],
        "timings_s": {"ocr": round(ocr_seconds, 3), "total": round(time.perf_counter() - started, 3)},
        "ocr_seconds_per_keyframe": round(ocr_seconds / max(1, len(detections)), 4),
        "source_sha256": probe.sha256,
    }
    return ProtectedRegions(video_id, count, height, width, boxes, ocr, tuple(keyframes), user_masks, ranges, lineage)
