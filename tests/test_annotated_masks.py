"""Annotated masks: one box per scene on a synthetic ad with known masks, cuts, absent products, drift.

The synthetic ad is a real H.264 file (PyAV): a textured, panning background per scene, a
two-colour product moving smoothly, a hard cut, and a scene without the product. Its exact
masks are known, so every frame's IoU is measured, not eyeballed.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from test_masks import tiny_clipseg_dir  # noqa: F401  (fixture: a tiny CLIPSeg saved like a real model dir)

from align_core.inputs.annotations import (
    AnnotationError,
    AnnotationRow,
    annotations_path,
    mask_inputs,
    read_annotations,
    resolve_annotations,
    write_annotations,
)
from align_core.inputs.csv_rows import CsvValidationError
from align_core.io.layout import DataLayout
from align_core.io.video_io import VideoWriter, probe_video
from align_core.perception.annotated_masks import AnnotatedSegmenter, AnnotatedSettings, check_annotated_masks
from align_core.perception.masks import make_segmenter, resolve_mask_source, segment_video

W, H, FPS = 144, 256, 12
SCENE = 18  # frames per scene


def _background(seed: int, height: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.uniform(40, 200, size=3)
    cells = cv2.resize(
        rng.random((height // 10, width // 10, 3)).astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC
    )
    return np.clip(base + (cells - 0.5) * 90, 0, 255).astype(np.uint8)


def _product(frame: np.ndarray, mask: np.ndarray, cx: float, cy: float) -> None:
    """A bottle-like product: an orange body and a dark-blue cap, drawn without anti-aliasing."""
    layer = np.zeros(mask.shape, np.uint8)
    cv2.ellipse(layer, (int(cx), int(cy)), (16, 28), 0, 0, 360, 1, -1, cv2.LINE_8)
    cap = np.zeros(mask.shape, np.uint8)
    cv2.rectangle(cap, (int(cx) - 7, int(cy) - 40), (int(cx) + 7, int(cy) - 24), 1, -1, cv2.LINE_8)
    frame[layer > 0] = (235, 120, 20)
    frame[cap > 0] = (30, 40, 140)
    mask |= (layer > 0) | (cap > 0)


def make_ad(path: Path, *, jump_at: int | None = None) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Three scenes (product moving right, product moving up, no product); returns exact masks and ranges."""
    ranges = [(0, SCENE), (SCENE, 2 * SCENE), (2 * SCENE, 3 * SCENE)]
    masks = np.zeros((3 * SCENE, H, W), bool)
    canvases = [_background(s, H + 40, W + 40) for s in (1, 2, 3)]
    with VideoWriter(path, FPS) as writer:
        for index in range(3 * SCENE):
            scene, k = divmod(index, SCENE)
            ox, oy = 20 + (k if scene != 1 else -k // 2), 20
            frame = canvases[scene][oy : oy + H, ox : ox + W].copy()
            if scene == 0:
                cx, cy = 40 + 2.5 * k, 120 + 6 * np.sin(k / 4)
                if jump_at is not None and k >= jump_at:
                    cx, cy = cx + 50, cy + 80  # teleports: no cut, so flow cannot follow
                _product(frame, masks[index], cx, cy)
            elif scene == 1:
                _product(frame, masks[index], 95 - k, 190 - 3 * k)
            writer.write(frame)
    return masks, ranges


def _box(mask: np.ndarray, pad: int = 3) -> tuple[float, float, float, float]:
    ys, xs = np.nonzero(mask)
    return (
        float(xs.min() - pad),
        float(ys.min() - pad),
        float(xs.max() - xs.min() + 1 + 2 * pad),
        float(ys.max() - ys.min() + 1 + 2 * pad),
    )


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    inter = (a & b).reshape(len(a), -1).sum(1)
    union = (a | b).reshape(len(a), -1).sum(1)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


@pytest.fixture(scope="module")
def ad(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, list[tuple[int, int]]]:
    path = tmp_path_factory.mktemp("ad") / "ad.mp4"
    masks, ranges = make_ad(path)
    return path, masks, ranges


def _run(
    video: Path,
    rows: list[AnnotationRow],
    ranges,
    tmp_path: Path,
    masks_dir: Path | None = None,
    settings: AnnotatedSettings | None = None,
):
    csv_path = tmp_path / "annotations.csv"
    csv_path.unlink(missing_ok=True)
    write_annotations(csv_path, rows)
    segmenter = AnnotatedSegmenter("ad", ranges, annotations_csv=csv_path, masks_dir=masks_dir, settings=settings)
    result = segment_video(video, "bottle", segmenter)
    return segmenter, result


def test_one_box_per_scene_gives_iou_at_least_0_8_on_every_frame(ad, tmp_path: Path) -> None:
    video, truth, ranges = ad
    rows = [
        AnnotationRow(2, "ad", "box", 1, None, *_box(truth[0]), "bottle"),
        AnnotationRow(3, "ad", "box", 2, None, *_box(truth[SCENE])),
    ]
    segmenter, result = _run(video, rows, ranges, tmp_path)
    iou = _iou(result.masks, truth)
    assert iou.min() >= 0.8, f"frames below 0.8: {np.nonzero(iou < 0.8)[0].tolist()} ({iou.min():.3f})"
    assert not result.masks[2 * SCENE :].any()  # scene 3 has no annotation: empty, never carried
    assert segmenter.result.unannotated_scenes == [3]
    assert all(check.passed for check in segmenter.checks()), [c.detail for c in segmenter.checks()]
    lineage = result.lineage
    assert lineage["mask_source"] == "annotated" and lineage["weights"] is None
    assert lineage["annotated_frames"] == [0, SCENE]
    assert result.segmenter_id.startswith("annotated:")


def test_a_box_later_in_the_scene_is_carried_backwards_too(ad, tmp_path: Path) -> None:
    video, truth, ranges = ad
    rows = [AnnotationRow(2, "ad", "box", 1, 12, *_box(truth[12]))]
    _, result = _run(video, rows, ranges, tmp_path)
    assert _iou(result.masks[:SCENE], truth[:SCENE]).min() >= 0.8


def test_a_box_on_a_frame_without_the_product_gives_an_empty_mask(ad, tmp_path: Path) -> None:
    video, truth, ranges = ad
    rows = [
        AnnotationRow(2, "ad", "box", 1, None, *_box(truth[0])),
        AnnotationRow(3, "ad", "box", 3, None, 40.0, 90.0, 50.0, 70.0),
    ]  # scene 3: background only
    segmenter, result = _run(video, rows, ranges, tmp_path)
    assert not result.masks[2 * SCENE :].any()
    seed = segmenter.result.seeds[2 * SCENE]
    assert seed["empty_boxes"] and "no" in seed["empty_boxes"][0]
    assert _iou(result.masks[:SCENE], truth[:SCENE]).min() >= 0.8


def test_a_cut_reseeds_instead_of_carrying_the_mask_across(ad, tmp_path: Path) -> None:
    video, truth, ranges = ad
    only_first = [AnnotationRow(2, "ad", "box", 1, None, *_box(truth[0]))]
    _, carried = _run(video, only_first, ranges, tmp_path)
    assert carried.masks[SCENE - 1].any() and not carried.masks[SCENE:].any()  # nothing crosses the cut
    both = only_first + [AnnotationRow(3, "ad", "box", 2, None, *_box(truth[SCENE]))]
    _, reseeded = _run(video, both, ranges, tmp_path)
    first_of_scene_2 = reseeded.masks[SCENE]
    assert _iou(first_of_scene_2[None], truth[SCENE][None])[0] >= 0.9
    assert not (first_of_scene_2 & truth[SCENE - 1]).any()  # not where the product was before the cut


def test_a_drifting_mask_fails_its_check_naming_the_frames(tmp_path: Path) -> None:
    """Without re-acquisition the mask stays behind where the product jumped from: a check names the frames.
    With it (the default) the product is found where it landed (tests/test_reacquisition.py for more)."""
    video = tmp_path / "jump.mp4"
    truth, ranges = make_ad(video, jump_at=9)
    rows = [AnnotationRow(2, "ad", "box", 1, None, *_box(truth[0]))]
    _, followed = _run(video, rows, ranges, tmp_path)
    assert _iou(followed.masks[:SCENE], truth[:SCENE]).min() >= 0.85
    segmenter, _ = _run(video, rows, ranges, tmp_path, settings=AnnotatedSettings(reacquire=False))
    failed = {c.name: c for c in segmenter.checks() if not c.passed}
    assert failed, "a mask left behind by a product that jumped must fail a check"
    frames = sorted({f for c in failed.values() for f in c.failing_frames})
    assert frames and min(frames) >= 9 and max(frames) < SCENE
    assert any(str(frames[0]) in c.detail for c in failed.values())


def test_clicks_and_a_mask_png_annotate_a_frame(ad, tmp_path: Path) -> None:
    video, truth, ranges = ad
    masks_dir = tmp_path / "pngs"
    masks_dir.mkdir()
    cv2.imwrite(str(masks_dir / "scene_2.png"), truth[SCENE].astype(np.uint8) * 255)
    ys, xs = np.nonzero(truth[0])
    centre = (float(xs.mean()), float(ys.mean()))
    cap = (float(xs[ys.argmin()]), float(ys.min() + 2))
    rows = [
        AnnotationRow(2, "ad", "positive", 1, None, *centre, None, None),  # the body
        AnnotationRow(3, "ad", "positive", 1, None, *cap, None, None),  # and the cap
        AnnotationRow(4, "ad", "negative", 1, None, 5.0, 5.0, None, None),
    ]
    segmenter, result = _run(video, rows, ranges, tmp_path, masks_dir=masks_dir)
    assert np.array_equal(result.masks[SCENE], truth[SCENE])  # the PNG is the mask on its frame
    assert _iou(result.masks[: 2 * SCENE], truth[: 2 * SCENE]).min() >= 0.7
    assert segmenter.result.seeds[0]["source"] == "clicks"
    assert segmenter.lineage()["mask_pngs"] == [str(masks_dir / "scene_2.png")]


def test_annotation_csv_problems_name_the_line_and_stay_with_their_video(tmp_path: Path) -> None:
    path = tmp_path / "annotations.csv"
    path.write_text(
        "video id,scene,frame,kind,x,y,w,h,label\n"
        "good,1,,box,10,20,30,40,bottle\n"
        "bad,,,box,10,20,30,40,\n"  # neither scene nor frame
        "bad,1,,box,10,20,-3,40,\n"  # negative width
        "bad,1,,wave,10,20,,,\n"  # unknown kind
        "good,2,,,,,,,\n"  # empty box: absent
    )
    table = read_annotations(path)
    assert [r.kind for r in table.rows_for("good")] == ["box", "absent"]
    with pytest.raises(CsvValidationError) as caught:
        table.rows_for("bad")
    text = str(caught.value)
    assert "line 3" in text and "line 4" in text and "line 5" in text and "wave" in text
    rows = table.rows_for("good")
    with pytest.raises(AnnotationError, match="scene 2 does not exist"):
        resolve_annotations("good", rows, [(0, 10)], 64, 64, csv_path=path)
    off = [AnnotationRow(7, "good", "box", None, 3, 500.0, 500.0, 10.0, 10.0)]
    with pytest.raises(AnnotationError, match="line 7.*outside the 64x64 frame"):
        resolve_annotations("good", off, [(0, 10)], 64, 64, csv_path=path)
    with pytest.raises(AnnotationError, match="frame 12 is not in scene 1"):
        resolve_annotations(
            "good", [AnnotationRow(8, "good", "box", 1, 12, 1.0, 1.0, 9.0, 9.0)], [(0, 10), (10, 20)], 64, 64
        )


def test_write_annotations_keeps_other_videos_rows(tmp_path: Path) -> None:
    path = tmp_path / "annotations.csv"
    write_annotations(path, [AnnotationRow(0, "a", "box", 1, None, 1.0, 2.0, 3.0, 4.0, "x")])
    write_annotations(path, [AnnotationRow(0, "b", "box", None, 5, 1.5, 2.0, 3.0, 4.0)])
    write_annotations(path, [AnnotationRow(0, "b", "box", 2, None, 9.0, 9.0, 9.0, 9.0)])
    table = read_annotations(path)
    assert table.video_ids == ["a", "b"]
    assert [(r.scene, r.frame, r.x) for r in table.rows_for("b")] == [(2, None, 9.0)]
    assert table.rows_for("a")[0].label == "x"


def test_mask_source_resolution(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path).ensure()
    provided = layout.provided_mask_path("v1")
    assert resolve_mask_source("provided", provided_file=provided, annotated=True) == ("annotated", None)
    name, reason = resolve_mask_source("provided", provided_file=provided, annotated=False)
    assert name == "provided" and "no provided mask file" in reason and "align-annotate" in reason
    assert resolve_mask_source("clipseg", provided_file=provided, annotated=True) == ("clipseg+annotated", None)
    assert resolve_mask_source("annotated", provided_file=provided, annotated=False)[1] is not None
    assert mask_inputs(layout, "v1") is None
    write_annotations(annotations_path(layout), [AnnotationRow(0, "v1", "box", 1, None, 1.0, 1.0, 5.0, 5.0)])
    assert mask_inputs(layout, "v1") == "annotated" and mask_inputs(layout, "v2") is None


def test_clipseg_probabilities_are_constrained_by_the_box(ad, tmp_path: Path, tiny_clipseg_dir: Path) -> None:
    video, truth, ranges = ad
    csv_path = tmp_path / "annotations.csv"
    write_annotations(csv_path, [AnnotationRow(2, "ad", "box", 1, None, *_box(truth[0]))])
    segmenter = make_segmenter(
        "clipseg+annotated", model=tiny_clipseg_dir, video_id="ad", scene_ranges=ranges, annotations_csv=csv_path
    )
    plain = make_segmenter("clipseg", model=tiny_clipseg_dir)
    probe = probe_video(video)
    segmenter.prepare(probe)
    from align_core.io.video_io import read_frames

    frames = read_frames(video, 0, 4)
    constrained = segmenter.segment(frames, "bottle", start=0)
    unconstrained = plain.segment(frames, "bottle", start=0)
    far = ~cv2.dilate(truth[0].astype(np.uint8), np.ones((31, 31), np.uint8)).astype(bool)
    assert unconstrained[0][far].max() > 0.05 and constrained[0][far].max() < 1e-3
    near = truth[0]
    np.testing.assert_allclose(constrained[0][near], unconstrained[0][near], atol=1e-4)
    late = read_frames(video, 2 * SCENE, 2 * SCENE + 2)  # scene 3 is not annotated: CLIPSeg as is
    np.testing.assert_allclose(
        segmenter.segment(late, "bottle", start=2 * SCENE), plain.segment(late, "bottle"), atol=1e-5
    )
    lineage = segmenter.lineage()
    assert lineage["segmenter"] == "clipseg+annotated" and lineage["clipseg"]["model"] == str(tiny_clipseg_dir)


def test_check_lists_frames_of_a_mask_that_grows(ad, tmp_path: Path) -> None:
    video, truth, ranges = ad
    rows = [AnnotationRow(2, "ad", "box", 1, None, *_box(truth[0]))]
    segmenter, _ = _run(video, rows, ranges, tmp_path)
    diagnostics = segmenter.diagnostics.copy()
    diagnostics.loc[diagnostics["frame"].isin([5, 6]), "area_ratio"] = 3.0
    band = next(c for c in check_annotated_masks(diagnostics) if c.name == "annotated_area_band")
    assert not band.passed and band.failing_frames == [5, 6] and "5, 6" in band.detail


def test_keyword_masks_asset_records_annotated_source_and_runs_its_checks(ad, tmp_path: Path) -> None:
    """Through Dagster: the catalog says which mask inputs exist, keyword_masks uses them, five checks run."""
    import shutil

    from dagster import DagsterInstance, materialize

    from align_assets.assets.catalog import video_catalog
    from align_assets.assets.masks import (
        annotated_appearance,
        annotated_area_band,
        annotated_box_iou,
        annotated_flow_consistency,
        annotated_product_found,
        keyword_masks,
    )
    from align_assets.partitions import VIDEO_PARTITIONS_NAME
    from align_assets.resources import default_resources
    from align_core.inputs.catalog import load_catalog

    video, truth, ranges = ad
    layout = DataLayout(tmp_path / "data").ensure()
    shutil.copyfile(video, layout.videos_dir / "ad1.mp4")
    layout.keywords_csv.write_text("_id,keyword_list[0]\nad1,perfume\n")
    write_annotations(
        annotations_path(layout),
        [
            AnnotationRow(0, "ad1", "box", None, 0, *_box(truth[0])),
            AnnotationRow(0, "ad1", "box", None, SCENE, *_box(truth[SCENE])),
        ],
    )
    checks = [
        annotated_area_band,
        annotated_flow_consistency,
        annotated_box_iou,
        annotated_appearance,
        annotated_product_found,
    ]
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(VIDEO_PARTITIONS_NAME, ["ad1"])
        result = materialize(
            [video_catalog, keyword_masks, *checks],
            partition_key="ad1",
            instance=instance,
            resources=default_resources(data_dir=layout.root, profile="demo"),
        )
        assert result.success
        assert load_catalog(layout.artifact_dir("video_catalog", "ad1")).mask_source == "annotated"
        meta = result.asset_materializations_for_node("keyword_masks")[0].metadata
        assert meta["mask_source"].value == "annotated" and meta["segmenter_id"].value.startswith("annotated:")
        evaluations = {
            e.check_name: e.passed
            for e in result.get_asset_check_evaluations()
            if e.asset_key.to_user_string() == "keyword_masks"
        }
        assert set(evaluations) == {
            "annotated_area_band",
            "annotated_flow_consistency",
            "annotated_box_iou",
            "annotated_appearance",
            "annotated_product_found",
        }
        assert (layout.artifact_dir("keyword_masks", "ad1") / "annotated_diagnostics.parquet").exists()
        scenes = load_catalog(layout.artifact_dir("video_catalog", "ad1")).scene_ranges
        assert len(scenes) >= 2  # the cuts were detected: each annotated frame starts its own scene
        assert all(evaluations.values()), evaluations


def test_annotation_server_lists_scenes_and_validates_what_it_saves(ad, tmp_path: Path) -> None:
    """The page's API without a browser (tests/system/test_annotation_page.py drives the page itself)."""
    import json
    import shutil
    import threading
    import urllib.error
    import urllib.request

    from align_core.cli.annotate import AnnotationServer

    video, truth, ranges = ad
    layout = DataLayout(tmp_path / "data").ensure()
    shutil.copyfile(video, layout.videos_dir / "ad1.mp4")
    server = AnnotationServer(layout, ["ad1"], port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        page = urllib.request.urlopen(server.url, timeout=30).read().decode()
        token = page.split('name="align-token" content="')[1].split('"')[0]

        def get(path: str) -> bytes:
            request = urllib.request.Request(server.url + path, headers={"X-Align-Token": token})
            return urllib.request.urlopen(request, timeout=30).read()

        listing = json.loads(get("api/videos"))["videos"]
        assert [s["start"] for s in listing[0]["scenes"]] == [a for a, _ in ranges]  # the catalog's cut detection
        png = urllib.request.urlopen(server.url + f"frame/ad1/{SCENE}.png", timeout=30).read()
        assert cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR).shape == (H, W, 3)

        def post(payload: dict) -> tuple[int, dict]:
            request = urllib.request.Request(
                server.url + "api/annotations",
                data=json.dumps(payload).encode(),
                headers={"Content-Type": "application/json", "X-Align-Token": token},
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as error:
                return error.code, json.loads(error.read())

        status, answer = post({"ad1": [{"scene": 1, "x": 100, "y": 10, "w": 80, "h": 20}]})  # past the right edge
        assert status == 400 and "not inside 144x256" in answer["error"]
        assert not annotations_path(layout).exists()  # nothing half-written
        status, answer = post(
            {"ad1": [{"scene": 1, "x": 20, "y": 80, "w": 50, "h": 90, "label": "bottle"}, {"scene": 3, "absent": True}]}
        )
        assert status == 200 and answer["rows"] == 2
        rows = read_annotations(annotations_path(layout)).rows_for("ad1")
        assert [(r.kind, r.scene, r.x, r.label) for r in rows] == [("box", 1, 20.0, "bottle"), ("absent", 3, None, "")]
        again = json.loads(get("api/videos"))["videos"][0]["scenes"]
        assert again[0]["boxes"] == [{"x": 20.0, "y": 80.0, "w": 50.0, "h": 90.0, "label": "bottle"}]
        assert again[2]["absent"] is True and again[2]["version"] == answer["versions"]["ad1"]["3"]
    finally:
        server.shutdown()


def test_masks_do_not_depend_on_what_ran_before_in_the_process(shared_data: Path) -> None:
    """GrabCut's k-means draws from OpenCV's per-thread generator: a video worker that segmented
    other videos first must still give this clip the same masks (it did not, before seeding)."""
    from align_core.inputs.annotations import FrameAnnotation
    from align_core.io.video_io import read_frames
    from align_core.perception.annotated_masks import AnnotatedSettings, segment_annotated_frame

    frames = read_frames(shared_data / "videos" / "fruit-and-vegetable-detection.mp4", 0, 101)
    boxes = {10: (324, 140, 66, 64), 40: (45, 145, 165, 60), 70: (216, 150, 117, 62), 100: (70, 134, 83, 79)}
    runs = []
    for history in (1, 2):
        cv2.setRNGSeed(history)  # another video's GrabCut calls, k-means or random draws before this one
        cv2.randu(np.zeros((64, 64), np.float32), 0, 1)
        runs.append(
            [
                segment_annotated_frame(
                    frames[t], FrameAnnotation(frame=t, scene_index=0, boxes=[box]), AnnotatedSettings()
                ).mask
                for t, box in boxes.items()
            ]
        )
    for t, first, second in zip(boxes, *runs, strict=False):
        assert np.array_equal(first, second), f"frame {t}: the mask changed with the random generator's history"
