"""Which language a member wrote in (German or English), from common words.

A small word list is enough for the two languages the studio answers in and costs
microseconds per message; a statistical detector (langdetect, fastText) would be a
dependency and a model download for a choice between two languages. ``None`` means
"cannot tell" (too short, or neither): callers fall back to the studio's language.
"""

from __future__ import annotations

import re

_WORDS = {
    "de": frozenset(
        "ich du er sie wir ihr mich mir dich dir mein meine dein deine und oder aber nicht kein keine ist "
        "bin bist sind "
        "habe hast hat haben möchte möchten würde gerne gern bitte danke hallo moin servus tschüss guten morgen tag "
        "abend wie was wann wo warum wer welche welcher kann kannst können einen einem einer eine ein der die das den "
        "dem des für mit von zu zum zur bei auf aus nach heute morgen noch auch schon mal kostet kosten preis preise "
        "trainingsplan probetraining probestunde öffnungszeiten geöffnet offen buchen termin kurs kurse woche".split()
    ),
    "en": frozenset(
        "i you he she we they me my your our and or but not no is am are was have has had would like want please "
        "thanks thank hello hi hey good morning evening afternoon how what when where why who which can could a an "
        "the for with from to of at on in today tomorrow also just much cost costs price prices plan training workout "
        "trial class classes book booking open opening hours week do does".split()
    ),
}
_TOKEN = re.compile(r"[a-zäöüß]+")
#: Words both languages share ("hallo" is German; "so", "in", "was" are ambiguous).
_SHARED = frozenset({"in", "was", "so", "man", "die", "also", "hat", "bin"})


#: Each language's words minus the shared ones (what a token scores for), and the umlauts.
_ONLY = {lang: words - _SHARED for lang, words in _WORDS.items()}
_UMLAUTS = frozenset("äöü")


def detect_language(text: str | None) -> str | None:
    """``"de"``, ``"en"`` or ``None`` for a member's message."""
    folded = (text or "").casefold()
    tokens = _TOKEN.findall(folded)
    if not tokens:
        return None
    # Counted in C (map over set membership): this runs for every inbound message.
    de = sum(map(_ONLY["de"].__contains__, tokens))
    en = sum(map(_ONLY["en"].__contains__, tokens))
    if "ß" in (text or "") or not _UMLAUTS.isdisjoint(folded):
        de += 1
    if de == en:
        return None
    return "de" if de > en else "en"
