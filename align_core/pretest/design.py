"""The pretest's between-participant design: Latin-square lists over variants, seeded orders.

With ``k`` variants, list ``j`` shows video ``i`` in variant ``(i + j) mod k``: every list shows
each video exactly once (so a participant never sees one ad twice, in two variants), and across
the ``k`` lists each video appears in each variant exactly once, so assigning participants to
lists in turn (participant ``n`` gets list ``n mod k``) keeps every video-variant cell equally
filled. The order of trials within a list is shuffled per participant by a generator seeded
from the study's design hash and the session id, so an order can be recomputed, never guessed.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "canonical_json",
    "design_hash",
    "latin_square_lists",
    "list_balance",
    "seeded_order",
]


def latin_square_lists(video_ids: Sequence[str], variants: Sequence[str]) -> list[list[dict[str, str]]]:
    """``len(variants)`` lists of ``{"video_id", "variant"}``, each video once per list, each
    video in each variant exactly once across the lists."""
    if not video_ids:
        raise ValueError("a pretest needs at least one video with eligible variants")
    if len(set(video_ids)) != len(video_ids) or len(set(variants)) != len(variants):
        raise ValueError(f"videos and variants must be distinct, got {list(video_ids)} and {list(variants)}")
    if not variants:
        raise ValueError("a pretest needs at least one variant")
    k = len(variants)
    return [
        [{"video_id": video, "variant": variants[(i + j) % k]} for i, video in enumerate(video_ids)] for j in range(k)
    ]


def list_balance(lists: Sequence[Sequence[dict[str, str]]]) -> dict[tuple[str, str], int]:
    """How often each ``(video_id, variant)`` cell appears across the lists (all equal when balanced)."""
    return dict(Counter((t["video_id"], t["variant"]) for trials in lists for t in trials))


def least_filled_list(list_indices: Iterable[int], n_lists: int) -> int:
    """The list with the fewest retained sessions, the lowest index on a tie.

    Without withdrawals this is participant ``n`` -> list ``n mod k``; a withdrawn session's place is
    refilled by the next participant, so the cells stay balanced among the participants analysed."""
    counts = Counter(list_indices)
    return min(range(n_lists), key=lambda index: (counts[index], index))


def seeded_order(count: int, *seed_parts: str) -> list[int]:
    """A permutation of ``range(count)`` fixed by the seed parts (reproducible from the study and session)."""
    seed = int.from_bytes(hashlib.sha256("\x1f".join(seed_parts).encode()).digest()[:8], "big")
    order = list(range(count))
    random.Random(seed).shuffle(order)
    return order


def canonical_json(document: dict[str, Any]) -> str:
    """Sorted keys, no whitespace: the form the design hash is taken of (as the analysis plan's)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)


def design_hash(study: dict[str, Any]) -> str:
    """sha256 of the study's canonical JSON without ``design_sha256`` and ``created_at``."""
    body = {k: v for k, v in study.items() if k not in ("design_sha256", "created_at")}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()
