"""A studio's knowledge base (FAQ entries, opening hours, prices) and offline retrieval.

Retrieval is TF-IDF cosine similarity over a custom analyser: normalised words without
stop words, character 4-grams of longer words (German compounds, typos: "Probetrainig"
still meets "Probetraining") and the cross-lingual keyword concepts of
:mod:`engine.ai.intent` ("wie teuer" and "was kostet" both carry ``zzprice``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from engine.ai.intent import add_concepts, normalize

logger = logging.getLogger(__name__)

_MODEL_CONFIG = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class KnowledgeEntry(BaseModel):
    """One FAQ entry. ``tags`` are extra search words (e.g. "Probestunde", "trial")."""

    model_config = _MODEL_CONFIG

    question: str
    answer: str
    tags: list[str] = Field(default_factory=list)


class PriceItem(BaseModel):
    """One line of the price list. ``price`` may be a number (euros) or text ("89 € / Monat")."""

    model_config = _MODEL_CONFIG

    name: str
    price: str | float
    description: str | None = None

    def display(self) -> str:
        """``"10er-Karte: 140 € (6 Monate gültig)"``."""
        price = self.price
        if isinstance(price, float | int):
            price = f"{price:.0f} €" if float(price).is_integer() else f"{price:.2f} €".replace(".", ",")
        extra = f" ({self.description})" if self.description else ""
        return f"{self.name}: {price}{extra}"


class KnowledgeBase(BaseModel):
    """Everything the assistant may tell members about a studio."""

    model_config = _MODEL_CONFIG

    studio_name: str = "unser Studio"
    entries: list[KnowledgeEntry] = Field(default_factory=list)
    opening_hours: dict[str, str] = Field(default_factory=dict)
    prices: list[PriceItem] = Field(default_factory=list)

    def opening_hours_text(self) -> str:
        """``"Mo-Fr 07:00-22:00, Sa 09:00-18:00"`` (empty when unknown)."""
        return ", ".join(f"{days} {hours}" for days, hours in self.opening_hours.items())

    def facts(self) -> str:
        """All facts as compact text, for an LLM's system prompt."""
        lines: list[str] = [f"Studio: {self.studio_name}"]
        if self.opening_hours:
            lines.append(f"Öffnungszeiten: {self.opening_hours_text()}")
        if self.prices:
            lines.append("Preise:")
            lines += [f"- {p.display()}" for p in self.prices]
        if self.entries:
            lines.append("FAQ:")
            lines += [f"- F: {e.question}\n  A: {e.answer}" for e in self.entries]
        return "\n".join(lines)

    def documents(self) -> list[Document]:
        """The retrievable documents: every entry, the opening hours, each price, the price list."""
        docs = [
            Document(f"faq:{e.question}", f"{e.question} {' '.join(e.tags)}", e.answer, e.answer)
            for e in self.entries
        ]
        if self.opening_hours:
            docs.append(
                Document(
                    "opening_hours",
                    "Öffnungszeiten wann geöffnet offen Uhrzeit opening hours open",
                    f"Unsere Öffnungszeiten: {self.opening_hours_text()}.",
                    " ".join(self.opening_hours),
                )
            )
        for item in self.prices:
            docs.append(
                Document(f"price:{item.name}", item.name, f"{item.display()}.", item.display())
            )
        if self.prices:
            listing = "; ".join(p.display() for p in self.prices)
            docs.append(Document("prices", "Preise Preisliste was kostet prices price list", f"Unsere Preise: {listing}.", ""))
        return docs


@dataclass(frozen=True)
class Document:
    """A retrievable unit: ``key`` identifies it in ``AIAnswer.sources``."""

    key: str
    title: str  # searched with keyword concepts, counted twice
    answer: str  # the reply text
    body: str  # searched as plain words


@dataclass(frozen=True)
class Match:
    """A retrieved document with its cosine similarity (0..1)."""

    document: Document
    score: float


STOP_WORDS = frozenset(
    """
    a an and are at be bei bin bis bitte can could da das dass dem den der des die do does doch du ein eine einen
    einem einer es euch eure euer for gibt gibts habe haben habt hab hallo hast hat hello hey hi how i ich ihr im
    in is ist it ja kann kannst koennt koennte man me mein meine meinen mir mit mich my noch nur of oder on or so
    the there this to und uns unser unsere what wie wir with wo you your zu zum zur auch aber also mal nicht
    was wer welche welcher welches sind sein am an dir dich ne nen eigentlich gerne gern heute morgen kommen
    """.split()
)
_WORD = re.compile(r"[a-z0-9€]+")
_OFF_TOPIC_PRICE_WEIGHT = 0.5


def analyse(text: str, *, concepts: bool = True) -> list[str]:
    """Tokens for retrieval: words without stop words, their 4-grams, and concept markers."""
    prepared = add_concepts(text) if concepts else normalize(text)
    tokens: list[str] = []
    for word in _WORD.findall(prepared):
        if word in STOP_WORDS:
            continue
        tokens.append(word)
        if len(word) > 4 and not word.startswith("zz"):
            tokens += [f"#{word[i:i + 4]}" for i in range(len(word) - 3)]
    return tokens


class Retriever:
    """TF-IDF cosine retrieval over a knowledge base's documents."""

    def __init__(self, knowledge_base: KnowledgeBase) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.documents = knowledge_base.documents()
        self._vectorizer: Any = None
        self._matrix: Any = None
        if not self.documents:
            return
        token_lists = [analyse(d.title) * 2 + analyse(d.body, concepts=False) for d in self.documents]
        self._vectorizer = TfidfVectorizer(analyzer=_identity, sublinear_tf=True)
        self._matrix = self._vectorizer.fit_transform(token_lists)
        self._price_weights = np.array([_OFF_TOPIC_PRICE_WEIGHT if d.key.startswith("price") else 1.0 for d in self.documents])

    def search(self, query: str, limit: int = 3) -> list[Match]:
        """The best matching documents for ``query``, best first."""
        if self._vectorizer is None or not query.strip():
            return []
        tokens = analyse(query)
        vector = self._vectorizer.transform([tokens])
        scores = (self._matrix @ vector.T).toarray().ravel()
        if "zzprice" not in tokens:  # price lines only answer questions about money
            scores = scores * self._price_weights
        order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:limit]
        return [Match(self.documents[i], float(scores[i])) for i in order if scores[i] > 0]


def _identity(tokens: list[str]) -> list[str]:
    return tokens


DEMO_KNOWLEDGE_BASE = KnowledgeBase(
    studio_name="Lotus Yoga & Fitness",
    opening_hours={"Mo-Fr": "07:00-22:00", "Sa": "09:00-18:00", "So": "09:00-16:00"},
    prices=[
        PriceItem(name="Probetraining", price="0 €", description="kostenlos, einmal pro Person"),
        PriceItem(name="Einzelstunde (Drop-in)", price="18 €", description="für alle Yoga- und Fitnesskurse"),
        PriceItem(name="10er-Karte", price="140 €", description="6 Monate gültig, für alle Kurse"),
        PriceItem(name="Flex-Mitgliedschaft", price="89 € / Monat", description="unbegrenzt Kurse, monatlich kündbar"),
        PriceItem(name="Jahresmitgliedschaft", price="69 € / Monat", description="unbegrenzt Kurse, 12 Monate Laufzeit"),
        PriceItem(name="Personal Training", price="75 €", description="60 Minuten Einzeltraining"),
    ],
    entries=[
        KnowledgeEntry(
            question="Wie funktioniert das Probetraining?",
            answer=(
                "Dein erstes Probetraining bei uns ist kostenlos! Buch es einfach in unserer App oder schreib uns "
                "deinen Wunschtermin. Bring bequeme Kleidung, ein Handtuch und etwas zu trinken mit – Matten haben wir vor Ort."
            ),
            tags=["Probestunde", "Schnupperstunde", "testen", "ausprobieren", "trial"],
        ),
        KnowledgeEntry(
            question="Wie funktioniert die 10er-Karte?",
            answer=(
                "Die 10er-Karte kostet 140 € und ist 6 Monate ab Kauf gültig. Du kannst sie für alle Kurse nutzen "
                "und direkt an der Theke oder in der App kaufen."
            ),
            tags=["Zehnerkarte", "Karte", "class pass"],
        ),
        KnowledgeEntry(
            question="Welche Mitgliedschaften gibt es?",
            answer=(
                "Wir haben zwei Mitgliedschaften mit unbegrenzt vielen Kursen: Flex für 89 € im Monat (monatlich kündbar) "
                "und die Jahresmitgliedschaft für 69 € im Monat (12 Monate Laufzeit). Es gibt keine Anmeldegebühr."
            ),
            tags=["Mitgliedschaft", "Vertrag", "Abo", "Tarif", "Mitglied werden", "membership"],
        ),
        KnowledgeEntry(
            question="Wie kann ich meine Mitgliedschaft kündigen?",
            answer=(
                "Die Flex-Mitgliedschaft kannst du mit 4 Wochen Frist zum Monatsende kündigen, die Jahresmitgliedschaft "
                "mit 1 Monat Frist zum Ende der Laufzeit. Kündige in der App unter Profil → Vertrag oder per E-Mail an "
                "hallo@lotus-studio.de."
            ),
            tags=["Kündigung", "kündigen", "Kündigungsfrist", "Vertrag beenden", "cancel membership"],
        ),
        KnowledgeEntry(
            question="Bis wann kann ich einen Kurs absagen?",
            answer=(
                "Du kannst Kurse bis 6 Stunden vor Beginn kostenlos in der App stornieren. Bei späterer Absage oder "
                "wenn du nicht erscheinst, wird die Stunde berechnet."
            ),
            tags=["Kurs absagen", "stornieren", "Stornierung", "abmelden", "Buchung stornieren", "cancel class"],
        ),
        KnowledgeEntry(
            question="Kann ich meine Mitgliedschaft pausieren?",
            answer=(
                "Ja – bei Krankheit, Schwangerschaft oder längeren Reisen kannst du deine Mitgliedschaft bis zu 3 Monate "
                "pro Jahr ruhen lassen. Schreib uns einfach kurz den gewünschten Zeitraum."
            ),
            tags=["pausieren", "ruhen lassen", "einfrieren", "Pause", "pause membership"],
        ),
        KnowledgeEntry(
            question="Wie buche ich einen Kurs?",
            answer=(
                "Kurse buchst du in unserer Lotus-App oder auf unserer Website unter „Kursplan“. Buchungen sind bis "
                "14 Tage im Voraus möglich; ist ein Kurs voll, kannst du dich auf die Warteliste setzen."
            ),
            tags=["buchen", "anmelden", "reservieren", "Platz", "Warteliste", "book class"],
        ),
        KnowledgeEntry(
            question="Was muss ich zum Training mitbringen?",
            answer=(
                "Bequeme Sportkleidung, ein Handtuch und etwas zu trinken. Yogamatten, Blöcke und Gurte stellen wir "
                "kostenlos bereit. Duschen und Schließfächer sind vorhanden."
            ),
            tags=["mitbringen", "Matte", "Handtuch", "Duschen", "Schließfach", "bring"],
        ),
        KnowledgeEntry(
            question="Wo kann ich parken und wie komme ich zu euch?",
            answer=(
                "Direkt vor dem Studio gibt es 12 kostenlose Kundenparkplätze. Mit der U2 fährst du bis Lindenplatz, "
                "von dort sind es 3 Minuten zu Fuß."
            ),
            tags=["parken", "Parkplatz", "Anfahrt", "Adresse", "U-Bahn", "parking"],
        ),
        KnowledgeEntry(
            question="Ich bin Anfänger – welcher Kurs passt zu mir?",
            answer=(
                "Für den Einstieg empfehlen wir Hatha Yoga Basics (Mo & Mi 18:00) oder Functional Fitness Beginner "
                "(Di & Do 19:00). Unsere Trainer*innen zeigen dir alle Übungen in Ruhe."
            ),
            tags=["Anfänger", "Einsteiger", "neu", "beginner", "Kursempfehlung"],
        ),
        KnowledgeEntry(
            question="Gibt es Rabatt für Studierende?",
            answer=(
                "Ja! Schüler*innen, Studierende und Azubis erhalten gegen Nachweis 20 % Rabatt auf alle Mitgliedschaften."
            ),
            tags=["Rabatt", "Studentenrabatt", "Ermäßigung", "Schüler", "Azubi", "discount"],
        ),
        KnowledgeEntry(
            question="Bekomme ich einen Trainingsplan?",
            answer=(
                "Ja, alle Mitglieder bekommen bei der Einführung einen individuellen Trainingsplan. Alle 8 Wochen "
                "passen wir ihn kostenlos an deine Fortschritte an."
            ),
            tags=["Trainingsplan", "Plan", "Einführung", "workout plan"],
        ),
        KnowledgeEntry(
            question="Habt ihr an Feiertagen geöffnet?",
            answer=(
                "An Feiertagen haben wir von 09:00 bis 14:00 geöffnet. Am 24., 25. und 31. Dezember sowie an Neujahr "
                "bleibt das Studio geschlossen."
            ),
            tags=["Feiertag", "Weihnachten", "Ostern", "Silvester", "holiday"],
        ),
    ],
)
