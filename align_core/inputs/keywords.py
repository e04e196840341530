"""Keyword screening: does the ad's keyword name a visible object a segmenter could find?

About a third of the real ``keywords.csv`` is empty and many of the rest are calls to action
("shop now", "free shipping", "desliza a la izquierda") or abstractions ("life insurance",
"this app"). Segmenting those would produce masks of nothing in particular, so their videos are
screened out of editing with a recorded reason instead of crashing or producing noise.

This is a transparent lexicon screen, not a language model: every verdict names the rule that
fired, and the lexicons are module constants a lab can extend. It also repairs one real data
defect: Cyrillic look-alike letters inside Latin words ("сream" with a Cyrillic "с").
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = [
    "KeywordVerdict",
    "screen_keyword",
]

Category = Literal["ok", "empty", "garbled", "call_to_action", "non_visual", "non_latin"]

#: Phrases (after lower-casing and whitespace folding) that are calls to action, in the
#: languages that appear in the real keyword file.
CALL_TO_ACTION_PHRASES: frozenset[str] = frozenset(
    {
        "shop now",
        "buy now",
        "order now",
        "get yours",
        "get yours now",
        "get yours today",
        "get your",
        "get it now",
        "get it today",
        "learn more",
        "click the link below",
        "click the link",
        "link in bio",
        "swipe left",
        "swipe up",
        "swipe right",
        "tap here",
        "check it out",
        "what are you waiting for",
        "out now",
        "download now",
        "sign up",
        "sign up now",
        "subscribe",
        "follow us",
        "try it now",
        "try it free",
        "install now",
        "play now",
        "book now",
        "call now",
        "apply now",
        "see more",
        "watch now",
        "shop the look",
        "don't miss out",
        "do not miss out",
        "limited time",
        "limited time offer",
        "act now",
        "desliza a la izquierda",
        "desliza hacia la izquierda",
        "compra ahora",
        "más información",
        "mas informacion",
        "descarga ahora",
        "jetzt kaufen",
        "mehr erfahren",
        "achetez maintenant",
    }
)

#: Words that carry no visible object on their own: offers, prices, deictics, filler.
NON_VISUAL_WORDS: frozenset[str] = frozenset(
    {
        "free",
        "shipping",
        "delivery",
        "sale",
        "sales",
        "discount",
        "discounts",
        "deal",
        "deals",
        "offer",
        "offers",
        "off",
        "promo",
        "promotion",
        "code",
        "coupon",
        "coupons",
        "price",
        "prices",
        "save",
        "savings",
        "money",
        "back",
        "guarantee",
        "buy",
        "get",
        "now",
        "today",
        "new",
        "best",
        "top",
        "this",
        "that",
        "these",
        "those",
        "it",
        "you",
        "your",
        "yours",
        "i",
        "we",
        "our",
        "my",
        "me",
        "love",
        "know",
        "what",
        "no",
        "idea",
        "the",
        "a",
        "an",
        "and",
        "or",
        "of",
        "for",
        "to",
        "in",
        "on",
        "with",
        "at",
        "by",
        "do",
        "not",
        "read",
        "public",
        "more",
        "here",
        "click",
        "link",
        "below",
        "shop",
        "order",
        "limited",
        "time",
        "only",
        "one",
        "two",
        "1",
        "2",
        "3",
        "bogo",
        "percent",
        "%",
        "summer",
        "winter",
        "spring",
        "fall",
        "black",
        "friday",
        "cyber",
        "monday",
        "holiday",
        "season",
        "video",
        "app",
        "game",
    }
)

#: Head nouns (last word) that name services or abstractions rather than objects in frame.
NON_VISUAL_HEADS: frozenset[str] = frozenset(
    {
        "insurance",
        "score",
        "finance",
        "financing",
        "loan",
        "loans",
        "mortgage",
        "credit",
        "health",
        "media",
        "plan",
        "plans",
        "reading",
        "readings",
        "service",
        "services",
        "app",
        "apps",
        "video",
        "videos",
        "account",
        "accounts",
        "course",
        "courses",
        "program",
        "programs",
        "idea",
        "ideas",
        "school",
        "therapy",
        "advice",
        "coaching",
        "investing",
        "trading",
        "banking",
        "surgery",
        "treatment",
        "removal",
        "subscription",
        "membership",
    }
)

#: Cyrillic letters that render like Latin ones (seen inside Latin words in the real data).
CYRILLIC_LOOKALIKES: dict[str, str] = {
    "а": "a",
    "в": "b",
    "е": "e",
    "ё": "e",
    "к": "k",
    "м": "m",
    "н": "h",
    "о": "o",
    "р": "p",
    "с": "c",
    "т": "t",
    "у": "y",
    "х": "x",
    "і": "i",
    "ј": "j",
    "ѕ": "s",
    "ԁ": "d",
    "ԛ": "q",
    "ԝ": "w",
    "А": "A",
    "В": "B",
    "Е": "E",
    "К": "K",
    "М": "M",
    "Н": "H",
    "О": "O",
    "Р": "P",
    "С": "C",
    "Т": "T",
    "У": "Y",
    "Х": "X",
    "І": "I",
    "Ј": "J",
    "Ѕ": "S",
}

#: Imperative verbs that open a call to action when the phrase ends in "now"/"today"
#: ("register now", "book your appointment today").
CALL_TO_ACTION_VERBS: frozenset[str] = frozenset(
    {
        "register",
        "book",
        "check",
        "call",
        "join",
        "claim",
        "grab",
        "try",
        "start",
        "order",
        "buy",
        "get",
        "shop",
        "download",
        "install",
        "play",
        "apply",
        "sign",
        "subscribe",
        "visit",
        "discover",
        "see",
        "watch",
        "learn",
        "find",
        "save",
        "click",
        "tap",
        "swipe",
        "schedule",
        "reserve",
        "enroll",
        "request",
        "upgrade",
        "switch",
        "donate",
        "follow",
    }
)

_GARBLE_MARKS = ("\u25a0", "\ufffd")
_PRICE = re.compile(r"(\d+\s*%|[$€£]\s*\d|\d+\s*(usd|eur|dollars?)\b)")
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)?|%", re.UNICODE)


@dataclass(frozen=True)
class KeywordVerdict:
    """The screen's decision for one keyword, with the rule that decided it."""

    raw: str
    keyword: str  # normalised form used downstream (prompts, segmenter queries)
    segmentable: bool
    category: Category
    reason: str
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def status(self) -> str:
        return "segmentable" if self.segmentable else "screened"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status
        data["notes"] = list(self.notes)
        return data


def _script(char: str) -> str:
    name = unicodedata.name(char, "")
    return name.split(" ")[0] if name else ""


def normalise_lookalikes(word: str) -> tuple[str, int]:
    """Replace Cyrillic look-alikes in a word that is otherwise Latin; return (word, count)."""
    letters = [c for c in word if c.isalpha()]
    if not letters or not any(_script(c) == "LATIN" for c in letters):
        return word, 0
    count = sum(1 for c in word if c in CYRILLIC_LOOKALIKES)
    if count == 0:
        return word, 0
    if any(_script(c) not in ("LATIN", "CYRILLIC") for c in letters):
        return word, 0
    if any(_script(c) == "CYRILLIC" and c not in CYRILLIC_LOOKALIKES for c in letters):
        return word, 0
    return "".join(CYRILLIC_LOOKALIKES.get(c, c) for c in word), count


def screen_keyword(raw: str | None) -> KeywordVerdict:
    """Decide whether ``raw`` names a visible product; never raises on odd text."""
    raw = "" if raw is None else str(raw)
    text = unicodedata.normalize("NFC", raw).strip()
    text = re.sub(r"\s+", " ", text)
    notes: list[str] = []
    if not text:
        return KeywordVerdict(raw, "", False, "empty", "keyword is empty: there is no product to locate")
    if any(mark in text for mark in _GARBLE_MARKS):
        return KeywordVerdict(
            raw,
            text,
            False,
            "garbled",
            "keyword contains replacement marks (\u25a0/\ufffd): the text was damaged before export",
        )
    words = text.split(" ")
    fixed = []
    replaced = 0
    for word in words:
        new_word, count = normalise_lookalikes(word)
        fixed.append(new_word)
        replaced += count
    if replaced:
        notes.append(f"replaced {replaced} Cyrillic look-alike letter(s) inside Latin words")
    text = " ".join(fixed)
    lowered = text.casefold()
    letters = [c for c in lowered if c.isalpha()]
    if letters and any(_script(c) != "LATIN" for c in letters):
        scripts = sorted({_script(c).title() for c in letters if _script(c) != "LATIN"})
        return KeywordVerdict(
            raw,
            text,
            False,
            "non_latin",
            f"keyword is in {', '.join(scripts)} script; the segmenters' text encoders are English-only "
            "(add an English product keyword to edit this video)",
            tuple(notes),
        )
    folded = lowered.strip(" .!?,;:")
    if folded in CALL_TO_ACTION_PHRASES:
        return KeywordVerdict(
            raw, text, False, "call_to_action", f"'{folded}' is a call to action, not an object", tuple(notes)
        )
    tokens = _WORD.findall(folded)
    if len(tokens) >= 2 and tokens[0] in CALL_TO_ACTION_VERBS and tokens[-1] in ("now", "today"):
        return KeywordVerdict(
            raw, text, False, "call_to_action", f"'{folded}' is an imperative call to action", tuple(notes)
        )
    if _PRICE.search(folded):
        return KeywordVerdict(
            raw, text, False, "non_visual", f"'{folded}' is a price or discount, not an object", tuple(notes)
        )
    if tokens and all(token in NON_VISUAL_WORDS for token in tokens):
        return KeywordVerdict(
            raw,
            text,
            False,
            "non_visual",
            f"every word of '{folded}' is an offer, filler or deictic word; nothing visible is named",
            tuple(notes),
        )
    if tokens and tokens[-1] in NON_VISUAL_HEADS:
        return KeywordVerdict(
            raw,
            text,
            False,
            "non_visual",
            f"'{folded}' names a service or abstraction ('{tokens[-1]}'), not an object in frame",
            tuple(notes),
        )
    return KeywordVerdict(raw, text, True, "ok", "names a product that can be located in frame", tuple(notes))
