"""The participant's page: one Jinja2 template (autoescaped) with its script inline.

The page gets the study's texts and viewing geometry here; the session's plan (trials, checks,
realism pairs) comes from the session-start answer. Every URL in it is relative, so the page
works unchanged under a reverse proxy's path prefix (``--root-path``).
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader

__all__ = [
    "render_page",
]

TEMPLATES = Environment(
    loader=PackageLoader("align_core.pretest", "templates"), autoescape=True, keep_trailing_newline=True
)


def render_page(study: dict[str, Any]) -> str:
    """The whole page for ``study`` (texts escaped; numbers as JSON for the script)."""
    config = {
        "window_deg": study["window_deg"],
        "viewing": study["viewing"],
        "realism_mode": study["realism"]["mode"],
        "study_id": study["study_id"],
    }
    return TEMPLATES.get_template("pretest.html").render(
        consent_text=study["consent_text"], instructions=study["instructions"], config=config
    )
