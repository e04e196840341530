"""Video ids: strings everywhere, validated before they become partition keys or path parts.

Real TikTok ids have 19 digits and overflow float64, so they must never pass through a numeric
parser. Ids also name directories under ``data/``; the pattern below forbids separators, dots
and anything else that could escape the data directory.
"""

from __future__ import annotations

import re

__all__ = [
    "InvalidVideoIdError",
    "SCIENTIFIC_ID",
    "VIDEO_ID_PATTERN",
    "is_valid_video_id",
    "validate_video_id",
    "video_id_from_filename",
]

VIDEO_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
#: A number in E notation as spreadsheets and float printers write one (``7.2E+18``,
#: ``7.22802e+18``, ``7.2e18``, ``1E+19``): a decimal point in the mantissa or a signed exponent,
#: and an exponent of at most three digits. Hex ids such as ``53e516736286023422000014`` (a
#: MongoDB ObjectId) also read as digits-e-digits but have neither, so they pass.
SCIENTIFIC_ID = re.compile(r"^[+-]?(\d+\.\d*[eE][+-]?\d{1,3}|\d+[eE][+-]\d{1,3})$")


class InvalidVideoIdError(ValueError):
    """A video id that cannot safely be a partition key or a path component."""


def validate_video_id(video_id: object, *, where: str = "") -> str:
    """Return ``video_id`` as a clean string or raise with a message that says why.

    ``where`` names the source (file and row) so the error points at the bad input.
    """
    prefix = f"{where}: " if where else ""
    if not isinstance(video_id, str):
        raise InvalidVideoIdError(
            f"{prefix}video id {video_id!r} is a {type(video_id).__name__}, not a string "
            "(ids must be read as text; 19-digit ids overflow float64)"
        )
    candidate = video_id.strip()
    if SCIENTIFIC_ID.match(candidate):
        raise InvalidVideoIdError(
            f"{prefix}video id {candidate!r} is in scientific notation; the original digits "
            "were lost when a spreadsheet or float parser touched the file"
        )
    if not VIDEO_ID_PATTERN.match(candidate):
        raise InvalidVideoIdError(
            f"{prefix}video id {candidate!r} is not allowed: use 1-128 letters, digits, '-' or '_' "
            "(no dots, slashes or spaces, so no id can escape the data directory)"
        )
    return candidate


def is_valid_video_id(video_id: object) -> bool:
    try:
        validate_video_id(video_id)
    except InvalidVideoIdError:
        return False
    return True


def video_id_from_filename(stem: str) -> str:
    """Derive a partition key from a video file's stem (``intel_bottle-detection`` stays as is).

    Characters outside the allowed set become ``-`` so real-world file names map to valid keys.
    """
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-_")
    return validate_video_id(cleaned[:128] or "video", where=f"file name {stem!r}")
