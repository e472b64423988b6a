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
    """One FAQ entry. ``tags`` are extra search words (e.g. "Probestunde", "trial").

    ``question``/``answer`` are in the studio's language (German); ``answer_en`` is what a member
    writing in English gets (without it they get ``answer``), matched by ``question_en``, the tags
    and ``answer_en`` itself.
    """

    model_config = _MODEL_CONFIG

    question: str
    answer: str
    question_en: str | None = None
    answer_en: str | None = None
    tags: list[str] = Field(default_factory=list)

    def search_text_en(self) -> str:
        """What an English question is matched against: the question (counted twice), tags, answer."""
        if not self.answer_en:
            return ""
        question = self.question_en or ""
        return f"{question} {question} {' '.join(self.tags)} {self.answer_en}"


class PriceItem(BaseModel):
    """One line of the price list. ``price`` may be a number (euros) or text ("89 € / Monat")."""

    model_config = _MODEL_CONFIG

    name: str
    price: str | float
    description: str | None = None
    name_en: str | None = None
    description_en: str | None = None

    def display(self, language: str = "de") -> str:
        """``"10er-Karte: 140 € (6 Monate gültig)"``; in English with the English name and description
        where given (``"10-class card: 140 € (valid for 6 months)"``)."""
        english = language == "en"
        price = self.price
        if isinstance(price, float | int):
            price = f"{price:.0f} €" if float(price).is_integer() else f"{price:.2f} €".replace(".", ",")
        elif english:
            price = _UNITS_EN.sub(lambda m: _UNITS_EN_WORDS[m.group(0)], price)
        name = (self.name_en if english else None) or self.name
        description = (self.description_en if english else None) or self.description
        extra = f" ({description})" if description else ""
        return f"{name}: {price}{extra}"


_UNITS_EN_WORDS = {"Monat": "month", "Jahr": "year", "Woche": "week", "Stunde": "hour"}
_UNITS_EN = re.compile(r"\b(?:" + "|".join(_UNITS_EN_WORDS) + r")\b")
_DAYS_EN_WORDS = {"Mo": "Mon", "Di": "Tue", "Mi": "Wed", "Do": "Thu", "Fr": "Fri", "Sa": "Sat", "So": "Sun"}
_DAY_WORDS_EN = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday weekend weekday today"
_WEEKDAYS = ("mo", "di|tu", "mi|we", "do|th", "fr", "sa", "so|su")


def _weekday_index(days: str) -> int:
    """0 for "Mo-Fr" or "Mon", 6 for "So"/"Sun"; 7 for labels that name no weekday ("Feiertage")."""
    first = days.strip().casefold()[:2]
    return next((i for i, names in enumerate(_WEEKDAYS) if first in names.split("|")), 7)


_DAYS_EN = re.compile(r"\b(?:" + "|".join(_DAYS_EN_WORDS) + r")\b")


class KnowledgeBase(BaseModel):
    """Everything the assistant may tell members about a studio."""

    model_config = _MODEL_CONFIG

    studio_name: str = "unser Studio"
    entries: list[KnowledgeEntry] = Field(default_factory=list)
    opening_hours: dict[str, str] = Field(default_factory=dict)
    prices: list[PriceItem] = Field(default_factory=list)

    def opening_hours_text(self, language: str = "de") -> str:
        """``"Mo-Fr 07:00-22:00, Sa 09:00-18:00"`` (empty when unknown); English day names for ``"en"``."""
        # Monday first: PostgreSQL's JSONB does not keep the keys' order ("Sa", "So", "Mo-Fr").
        ordered = sorted(self.opening_hours.items(), key=lambda item: _weekday_index(item[0]))
        text = ", ".join(f"{days} {hours}" for days, hours in ordered)
        return _DAYS_EN.sub(lambda m: _DAYS_EN_WORDS[m.group(0)], text) if language == "en" else text

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
        """The retrievable documents: every entry, the opening hours, each price, the price list.

        Each carries its answer in German and, where the knowledge base has it, in English with
        the English words a member writing in English is matched against (``search_en``).
        """
        docs = [
            Document(
                f"faq:{e.question}",
                f"{e.question} {' '.join(e.tags)}",
                e.answer,
                e.answer,
                e.answer_en,
                e.search_text_en(),
            )
            for e in self.entries
        ]
        if self.opening_hours:
            docs.append(
                Document(
                    "opening_hours",
                    "Öffnungszeiten wann geöffnet offen Uhrzeit opening hours open",
                    f"Unsere Öffnungszeiten: {self.opening_hours_text()}.",
                    " ".join(self.opening_hours),
                    f"Our opening hours: {self.opening_hours_text('en')}.",
                    f"opening hours open closed times {_DAY_WORDS_EN}",
                )
            )
        for item in self.prices:
            docs.append(
                Document(
                    f"price:{item.name}",
                    item.name,
                    f"{item.display()}.",
                    item.display(),
                    f"{item.display('en')}.",
                    f"{item.name} {item.display('en')}",
                )
            )
        if self.prices:
            docs.append(
                Document(
                    "prices",
                    "Preise Preisliste was kostet prices price list",
                    f"Unsere Preise: {'; '.join(p.display() for p in self.prices)}.",
                    "",
                    f"Our prices: {'; '.join(p.display('en') for p in self.prices)}.",
                    "prices price list costs fees rates",
                )
            )
        return docs


@dataclass(frozen=True)
class Document:
    """A retrievable unit: ``key`` identifies it in ``AIAnswer.sources``."""

    key: str
    title: str  # searched with keyword concepts, counted twice
    answer: str  # the reply text (German)
    body: str  # searched as plain words
    answer_en: str | None = None  # the reply to a member writing in English
    search_en: str = ""  # what an English question is matched against ("" = not in the English index)

    def answer_in(self, language: str) -> str:
        """The reply in ``language`` ("de" or "en"); German when there is no English text."""
        return (self.answer_en if language == "en" else None) or self.answer


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
    when where which who why should would like d s m ll re ve t does did any get some our am want please just
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
            tokens += [f"#{word[i : i + 4]}" for i in range(len(word) - 3)]
    return tokens


class Retriever:
    """TF-IDF cosine retrieval over a knowledge base's documents.

    ``language="en"`` indexes the documents' English texts (``Document.search_en``), so a
    question in English is not measured against German words.
    """

    def __init__(self, knowledge_base: KnowledgeBase, language: str = "de") -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        documents = knowledge_base.documents()
        self.documents = [d for d in documents if d.search_en] if language == "en" else documents
        self._vectorizer: Any = None
        self._matrix: Any = None
        if not self.documents:
            return
        if language == "en":
            token_lists = [analyse(d.search_en) for d in self.documents]
        else:
            token_lists = [analyse(d.title) * 2 + analyse(d.body, concepts=False) for d in self.documents]
        self._vectorizer = TfidfVectorizer(analyzer=_identity, sublinear_tf=True)
        self._matrix = self._vectorizer.fit_transform(token_lists)
        self._price_weights = np.array(
            [_OFF_TOPIC_PRICE_WEIGHT if d.key.startswith("price") else 1.0 for d in self.documents]
        )

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
        PriceItem(
            name="Probetraining",
            price="0 €",
            description="kostenlos, einmal pro Person",
            name_en="Trial class",
            description_en="free, once per person",
        ),
        PriceItem(
            name="Einzelstunde (Drop-in)",
            price="18 €",
            description="für alle Yoga- und Fitnesskurse",
            name_en="Single class (drop-in)",
            description_en="for every yoga and fitness class",
        ),
        PriceItem(
            name="10er-Karte",
            price="140 €",
            description="6 Monate gültig, für alle Kurse",
            name_en="10-class card",
            description_en="valid for 6 months, for every class",
        ),
        PriceItem(
            name="Flex-Mitgliedschaft",
            price="89 € / Monat",
            description="unbegrenzt Kurse, monatlich kündbar",
            name_en="Flex membership",
            description_en="unlimited classes, cancel monthly",
        ),
        PriceItem(
            name="Jahresmitgliedschaft",
            price="69 € / Monat",
            description="unbegrenzt Kurse, 12 Monate Laufzeit",
            name_en="Annual membership",
            description_en="unlimited classes, 12-month term",
        ),
        PriceItem(
            name="Personal Training",
            price="75 €",
            description="60 Minuten Einzeltraining",
            name_en="Personal training",
            description_en="60 minutes one-to-one",
        ),
    ],
    entries=[
        KnowledgeEntry(
            question="Wie funktioniert das Probetraining?",
            question_en="How does the free trial class work? Can I try a class?",
            answer=(
                "Dein erstes Probetraining bei uns ist kostenlos! Buch es einfach in unserer App oder schreib uns "
                "deinen Wunschtermin. Bring bequeme Kleidung, ein Handtuch und etwas zu trinken mit – "
                "Matten haben wir vor Ort."
            ),
            answer_en=(
                "Your first trial class with us is free! Book it in our app or send us the day and time you would "
                "like. Bring comfortable clothes, a towel and something to drink – we have mats here."
            ),
            tags=["Probestunde", "Schnupperstunde", "testen", "ausprobieren", "trial"],
        ),
        KnowledgeEntry(
            question="Wie funktioniert die 10er-Karte?",
            question_en="How does the 10-class card work?",
            answer=(
                "Die 10er-Karte kostet 140 € und ist 6 Monate ab Kauf gültig. Du kannst sie für alle Kurse nutzen "
                "und direkt an der Theke oder in der App kaufen."
            ),
            answer_en=(
                "The 10-class card costs 140 € and is valid for 6 months from purchase. You can use it for every "
                "class and buy it at the front desk or in the app."
            ),
            tags=["Zehnerkarte", "Karte", "class pass"],
        ),
        KnowledgeEntry(
            question="Welche Mitgliedschaften gibt es?",
            question_en="Which memberships do you offer?",
            answer=(
                "Wir haben zwei Mitgliedschaften mit unbegrenzt vielen Kursen: Flex für 89 € im Monat "
                "(monatlich kündbar) "
                "und die Jahresmitgliedschaft für 69 € im Monat (12 Monate Laufzeit). Es gibt keine Anmeldegebühr."
            ),
            answer_en=(
                "We have two memberships with unlimited classes: Flex for 89 € a month (cancel monthly) and the "
                "annual membership for 69 € a month (12-month term). There is no sign-up fee."
            ),
            tags=["Mitgliedschaft", "Vertrag", "Abo", "Tarif", "Mitglied werden", "membership"],
        ),
        KnowledgeEntry(
            question="Wie kann ich meine Mitgliedschaft kündigen?",
            question_en="How do I cancel my membership?",
            answer=(
                "Die Flex-Mitgliedschaft kannst du mit 4 Wochen Frist zum Monatsende kündigen, "
                "die Jahresmitgliedschaft "
                "mit 1 Monat Frist zum Ende der Laufzeit. Kündige in der App unter Profil → Vertrag oder per E-Mail an "
                "hallo@lotus-studio.de."
            ),
            answer_en=(
                "You can cancel the Flex membership with 4 weeks' notice to the end of a month, the annual membership"
                " with 1 month's notice to the end of its term. Cancel in the app under Profile → Contract or by "
                "e-mail to hallo@lotus-studio.de."
            ),
            tags=["Kündigung", "kündigen", "Kündigungsfrist", "Vertrag beenden", "cancel membership"],
        ),
        KnowledgeEntry(
            question="Bis wann kann ich einen Kurs absagen?",
            question_en="Until when can I cancel a class booking?",
            answer=(
                "Du kannst Kurse bis 6 Stunden vor Beginn kostenlos in der App stornieren. Bei späterer Absage oder "
                "wenn du nicht erscheinst, wird die Stunde berechnet."
            ),
            answer_en=(
                "You can cancel a class free of charge in the app up to 6 hours before it starts. If you cancel later"
                " or don't show up, the class is charged."
            ),
            tags=["Kurs absagen", "stornieren", "Stornierung", "abmelden", "Buchung stornieren", "cancel class"],
        ),
        KnowledgeEntry(
            question="Kann ich meine Mitgliedschaft pausieren?",
            question_en="Can I pause or freeze my membership?",
            answer=(
                "Ja – bei Krankheit, Schwangerschaft oder längeren Reisen kannst du deine Mitgliedschaft "
                "bis zu 3 Monate "
                "pro Jahr ruhen lassen. Schreib uns einfach kurz den gewünschten Zeitraum."
            ),
            answer_en=(
                "Yes – if you are ill, pregnant or travelling for a longer time, you can pause your membership for up"
                " to 3 months a year. Just send us the dates."
            ),
            tags=["pausieren", "ruhen lassen", "einfrieren", "Pause", "pause membership"],
        ),
        KnowledgeEntry(
            question="Wie buche ich einen Kurs?",
            question_en="How do I book a class?",
            answer=(
                "Kurse buchst du in unserer Lotus-App oder auf unserer Website unter „Kursplan“. Buchungen sind bis "
                "14 Tage im Voraus möglich; ist ein Kurs voll, kannst du dich auf die Warteliste setzen."
            ),
            answer_en=(
                "Book classes in our Lotus app or on our website under “Class schedule”. You can book up to 14 days "
                "ahead; if a class is full, join the waiting list."
            ),
            tags=["buchen", "anmelden", "reservieren", "Platz", "Warteliste", "book class"],
        ),
        KnowledgeEntry(
            question="Was muss ich zum Training mitbringen?",
            question_en="What do I need to bring to class? Showers, lockers, mats?",
            answer=(
                "Bequeme Sportkleidung, ein Handtuch und etwas zu trinken. Yogamatten, Blöcke und Gurte stellen wir "
                "kostenlos bereit. Duschen und Schließfächer sind vorhanden."
            ),
            answer_en=(
                "Comfortable sportswear, a towel and something to drink. Yoga mats, blocks and straps are free to "
                "use. There are showers and lockers."
            ),
            tags=["mitbringen", "Matte", "Handtuch", "Duschen", "Schließfach", "bring"],
        ),
        KnowledgeEntry(
            question="Wo kann ich parken und wie komme ich zu euch?",
            question_en="Where can I park and how do I get to you? Where are you?",
            answer=(
                "Direkt vor dem Studio gibt es 12 kostenlose Kundenparkplätze. Mit der U2 fährst du bis Lindenplatz, "
                "von dort sind es 3 Minuten zu Fuß."
            ),
            answer_en=(
                "There are 12 free customer parking spaces right in front of the studio. Take the U2 to Lindenplatz; "
                "from there it is a 3-minute walk."
            ),
            tags=["parken", "Parkplatz", "Anfahrt", "Adresse", "U-Bahn", "parking"],
        ),
        KnowledgeEntry(
            question="Ich bin Anfänger – welcher Kurs passt zu mir?",
            question_en="I'm a beginner – which class suits me?",
            answer=(
                "Für den Einstieg empfehlen wir Hatha Yoga Basics (Mo & Mi 18:00) oder Functional Fitness Beginner "
                "(Di & Do 19:00). Unsere Trainer*innen zeigen dir alle Übungen in Ruhe."
            ),
            answer_en=(
                "To start, we recommend Hatha Yoga Basics (Mon & Wed 6 pm) or Functional Fitness Beginner (Tue & Thu "
                "7 pm). Our trainers will show you every exercise at your own pace."
            ),
            tags=["Anfänger", "Einsteiger", "neu", "beginner", "Kursempfehlung"],
        ),
        KnowledgeEntry(
            question="Gibt es Rabatt für Studierende?",
            question_en="Is there a student discount?",
            answer=(
                "Ja! Schüler*innen, Studierende und Azubis erhalten gegen Nachweis 20 % Rabatt "
                "auf alle Mitgliedschaften."
            ),
            answer_en="Yes! Pupils, students and apprentices get 20 % off every membership with proof of status.",
            tags=["Rabatt", "Studentenrabatt", "Ermäßigung", "Schüler", "Azubi", "discount"],
        ),
        KnowledgeEntry(
            question="Bekomme ich einen Trainingsplan?",
            question_en="Do I get a training plan?",
            answer=(
                "Ja, alle Mitglieder bekommen bei der Einführung einen individuellen Trainingsplan. Alle 8 Wochen "
                "passen wir ihn kostenlos an deine Fortschritte an."
            ),
            answer_en=(
                "Yes, every member gets a personal training plan at their introduction session. We adapt it to your "
                "progress every 8 weeks, free of charge."
            ),
            tags=["Trainingsplan", "Plan", "Einführung", "workout plan"],
        ),
        KnowledgeEntry(
            question="Habt ihr an Feiertagen geöffnet?",
            question_en="Are you open on public holidays like Christmas or Easter?",
            answer=(
                "An Feiertagen haben wir von 09:00 bis 14:00 geöffnet. Am 24., 25. und 31. Dezember sowie an Neujahr "
                "bleibt das Studio geschlossen."
            ),
            answer_en=(
                "On public holidays we are open from 9 am to 2 pm. The studio is closed on 24, 25 and 31 December and"
                " on New Year's Day."
            ),
            tags=["Feiertag", "Weihnachten", "Ostern", "Silvester", "holiday"],
        ),
    ],
)
