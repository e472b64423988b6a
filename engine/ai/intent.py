"""Built-in offline intent classifier for German and English studio messages.

The model is a TF-IDF (word 1-2 grams + character 2-5 grams) logistic regression trained
on the labelled examples shipped in ``engine/ai/data/intents.jsonl``. Character n-grams make
it robust against German compounds ("Probetraining", "10er-Karte") and WhatsApp typos.

Nothing is downloaded: the model is trained lazily, in well under a second, on first use
and cached for the whole process.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any

from engine.workflow.definitions import KNOWN_INTENTS

logger = logging.getLogger(__name__)

#: The intents the built-in classifier knows (the format's list; one source of truth).
INTENTS: tuple[str, ...] = KNOWN_INTENTS

DATA_PATH = Path(__file__).parent / "data" / "intents.jsonl"

_FOLD = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"})
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class IntentResult:
    """The predicted intent of a message and the model's probability for it (0..1)."""

    intent: str
    confidence: float

    def to_output(self) -> dict[str, Any]:
        """Return a JSON-able dict (``{"intent": ..., "confidence": ...}``)."""
        return {"intent": self.intent, "confidence": round(self.confidence, 4)}


def normalize(text: str) -> str:
    """Lower-case, fold umlauts/ß (``ö`` -> ``oe``) and collapse whitespace."""
    text = unicodedata.normalize("NFC", text).lower().translate(_FOLD)
    return _SPACES.sub(" ", text).strip()


# Cross-lingual keyword concepts. A match appends a marker token (e.g. ``zzprice``) to the
# word features, so "Was kostet ..." and "how much is ..." share a feature even when the
# training set has few examples with that exact wording. Patterns run on normalize()d text.
_CONCEPTS: dict[str, tuple[str, ...]] = {
    "plan": (
        r"plan\b",
        r"trainingsplan",
        r"workout",
        r"uebung",
        r"routine",
        r"programm?",
        r"\bsplit",
        r"saetze",
        r"wiederholung",
        r"muskel",
        r"abnehm",
        r"\bkraft",
        r"dehn",
        r"stretch",
        r"exercise",
        r"\bsets?\b",
        r"\breps?\b",
        r"muscle",
        r"strength",
        r"stronger",
        r"lose weight",
        r"fat loss",
        r"abs\b",
        r"glute",
        r"\bcore\b",
        r"\bbeine?\b",
        r"\blegs?\b",
        r"bauch",
        r"oberkoerper",
        r"upper body",
        r"beweglich",
        r"mobility",
        r"ausdauer",
        r"endurance",
        r"marathon",
        r"\b10k\b",
        r"hantel",
        r"dumbbell",
        r"kettlebell",
        r"was (soll|sollte) ich (machen|trainieren)",
        r"what should i (do|train)",
        r"staerker",
        r"ganzkoerper",
        r"full body",
    ),
    "book": (
        r"buch(e|en|t|ung)",
        r"\bbook",
        r"reservier",
        r"\breserv",
        r"anmeld",
        r"eintrag",
        r"trag .*\bein\b",
        r"platz",
        r"plaetze",
        r"warteliste",
        r"waitlist",
        r"termin",
        r"vereinbar",
        r"mitmachen",
        r"sign (me )?up",
        r"\bspots?\b",
        r"put me (down|in)",
        r"add me",
        r"schedule",
        r"\bjoin",
        r"\bspace\b",
        r"regist",
        r"ausgebucht",
        r"fully booked",
        r"save me",
    ),
    "cancel": (
        r"kuendig",
        r"storn",
        r"absag",
        r"abmeld",
        r"austrag",
        r"streich",
        r"nicht kommen",
        r"schaff\w* .*nicht",
        r"nicht schaff",
        r"loesch",
        r"beend",
        r"cancel",
        r"terminat",
        r"(can'?t|cannot|won'?t|not) (be able to )?(make|come)",
        r"take me off",
        r"remove me",
        r"drop out",
        r"unsubscrib",
        r"\bend my",
        r"stop my",
        r"refund",
        r"geld zurueck",
        r"not (want to )?renew",
        r"nicht verlaenger",
        r"\braus\b",
        r"krank",
        r"\bsick\b",
    ),
    "price": (
        r"kost(e|et|en)\b",
        r"kosten",
        r"preis",
        r"teuer",
        r"billig",
        r"guenstig",
        r"rabatt",
        r"ermaessig",
        r"gebuehr",
        r"\bzahl",
        r"bezahl",
        r"\beuro",
        r"€",
        r"angebot",
        r"aktion",
        r"\bcosts?\b",
        r"pric",
        r"how much",
        r"wie ?viel kostet",
        r"expensive",
        r"cheap",
        r"discount",
        r"\bfees?\b",
        r"\bpay\b",
        r"offers?\b",
        r"\bdeals?\b",
        r"\brates?\b",
    ),
    "hours": (
        r"\boffen\b",
        r"geoeffnet",
        r"oeffn",
        r"\bzu\b\??$",
        r"macht ihr .*zu",
        r"\bauf\b\??$",
        r"feiertag",
        r"uhrzeit",
        r"\bopen",
        r"\bclos",
        r"\bhours\b",
        r"what time",
        r"holiday",
        r"how (late|early)",
        r"bis wann",
        r"bis wie ?viel uhr",
        r"ab wann",
        r"ab wie ?viel uhr",
        r"weihnacht",
        r"christmas",
        r"silvester",
        r"ostern",
        r"easter",
        r"24/7",
        r"besetzt",
        r"staffed",
        r"\bopening times",
        r"sonntags?",
        r"sundays?",
        r"wochenende",
        r"weekend",
    ),
    "trial": (
        r"probe",
        r"schnupper",
        r"\btest",
        r"ausprobier",
        r"kennenlern",
        r"unverbindlich",
        r"gratis",
        r"erste (stunde|mal)",
        r"trial",
        r"\btry",
        r"taster",
        r"first tim",
        r"first class",
        r"\bintro",
        r"no commitment",
        r"\bneu\b",
        r"\bnew\b",
        r"noch nie",
        r"never been",
        r"reinschau",
        r"reinschnupper",
        r"for free",
        r"kostenlos (mit|vorbei|test|aus)",
    ),
    "member": (
        r"mitglied",
        r"vertrag",
        r"\babo\b",
        r"abonnement",
        r"tarif",
        r"pausier",
        r"ruhen",
        r"einfrier",
        r"laufzeit",
        r"verlaenger",
        r"beitrag",
        r"abbuch",
        r"bankverbind",
        r"\biban\b",
        r"member",
        r"contract",
        r"\bpause",
        r"freeze",
        r"on hold",
        r"renew",
        r"upgrade",
        r"bank details",
        r"gueltig",
        r"valid",
        r"urban sports",
        r"wellpass",
        r"\bmonthly plan",
        r"basic",
        r"unlimited",
        r"premium",
        r"ruhend",
    ),
    "complaint": (
        r"unzufrieden",
        r"aerger",
        r"beschwer",
        r"kaputt",
        r"defekt",
        r"dreckig",
        r"schmutz",
        r"nerv",
        r"sauer\b",
        r"enttaeusch",
        r"unfreundlich",
        r"unmoeglich",
        r"frech",
        r"katastroph",
        r"frust",
        r"zu (laut|kalt|warm|heiss|spaet|voll)",
        r"nicht ok",
        r"ueberfuell",
        r"reicht",
        r"funktioniert (nie|nicht)",
        r"complain",
        r"unhappy",
        r"annoy",
        r"\brude\b",
        r"dirty",
        r"filthy",
        r"broken",
        r"disappoint",
        r"unacceptable",
        r"terrible",
        r"awful",
        r"upset",
        r"fed up",
        r"not ok",
        r"not happy",
        r"too (loud|cold|hot|late|full)",
        r"smell",
        r"riech",
        r"stink",
        r"overcrowd",
        r"overbook",
        r"never works",
        r"schlecht",
        r"\bbad\b",
        r"\bmies",
        r"ignorier",
        r"ignored",
        r"freezing",
        r"kalt\b",
        r"\bcold\b",
        r"unverschaemt",
        r"horrible",
        r"worst",
    ),
    "greet": (
        r"^(hallo|hi+|hey+|moin|servus|huhu|halloechen|hello|hiya|yo|howdy|heyho)\b",
        r"guten (morgen|tag|abend)",
        r"good (morning|afternoon|evening)",
        r"gruess",
        r"\bdanke",
        r"\bdank\b",
        r"tschuess",
        r"ciao",
        r"bis (morgen|bald|dann|spaeter)",
        r"\bthanks?\b",
        r"thank you",
        r"\bthx\b",
        r"cheers",
        r"\bbye\b",
        r"see you",
        r"^(ok|okay|alles klar|super|cool|perfekt|top)\b",
        r"schoenen (abend|tag)",
        r"nice (evening|day)",
        r"wie gehts",
        r"how are you",
    ),
    "facility": (
        r"park",
        r"fahrrad",
        r"\bbike\b",
        r"handtu",
        r"towel",
        r"wlan",
        r"wifi",
        r"schliessfa",
        r"spind",
        r"locker",
        r"duschgel",
        r"shower gel",
        r"\bhund",
        r"\bdog",
        r"adresse",
        r"address",
        r"bewerb",
        r"\bjob",
        r"hiring",
        r"\bapply",
        r"rechnung",
        r"invoice",
        r"receipt",
        r"quittung",
        r"vergessen",
        r"forgot",
        r"left my",
        r"liegen lassen",
        r"barrierefrei",
        r"accessible",
        r"instagram",
        r"snack",
        r"shake",
        r"kaufen",
        r"\bbuy",
        r"\bsell",
        r"verkauf",
        r"eingang",
        r"entrance",
        r"bahn",
        r"train\b",
        r"\bbus\b",
        r"physio",
        r"\bkarte zahlen",
        r"by card",
        r"\balt\b",
        r"\bage\b",
        r"event",
    ),
}
_COMPILED_CONCEPTS = [(name, re.compile("|".join(p))) for name, p in _CONCEPTS.items()]


def _required_literals(seq: Any) -> frozenset[str] | None:
    """Strings of which every match of ``seq`` contains at least one; None when nothing can be said.

    ``seq`` is a parsed regular expression (``re._parser``, the standard library's own parser,
    so this follows the pattern exactly): a sequence of operations. A run of literal characters
    is required where it stands; a group, or a repeat of at least once, requires what its
    content requires; an alternation requires what one of its branches requires (the union).
    Of several candidates the one with the longest shortest string is kept (the most selective).
    """
    from re import _parser as sre  # type: ignore[attr-defined]  # the stdlib parser, not public API

    candidates: list[frozenset[str]] = []
    run: list[str] = []

    def close() -> None:
        if run:
            candidates.append(frozenset(["".join(run)]))
        run.clear()

    for op, av in seq:
        if op is sre.LITERAL:
            run.append(chr(av))
            continue
        found: frozenset[str] | None = None
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT) and av[0] >= 1:
            inner = list(av[2])
            if len(inner) == 1 and inner[0][0] is sre.LITERAL:
                run.append(chr(inner[0][1]))  # "hi+" requires "hi"; what follows may be another "i"
                close()
                continue
            close()
            found = _required_literals(inner)
        elif op is sre.SUBPATTERN:
            close()
            found = _required_literals(list(av[3])) if not (av[1] or av[2]) else None
        elif op is sre.BRANCH:
            close()
            branches = [_required_literals(list(branch)) for branch in av[1]]
            found = (
                None if any(b is None for b in branches) else frozenset().union(*[b for b in branches if b is not None])
            )
        else:
            close()
        if found:
            candidates.append(found)
    close()
    if not candidates:
        return None
    return max(candidates, key=lambda strings: (min(len(x) for x in strings), -len(strings)))


def _concept_filter(pattern: re.Pattern[str]) -> tuple[str, ...] | None:
    """Strings of which a text must contain one to match ``pattern``; None: always search."""
    from re import _parser as sre  # type: ignore[attr-defined]  # the stdlib parser, not public API

    if pattern.flags & re.IGNORECASE:
        return None
    found = _required_literals(list(sre.parse(pattern.pattern)))
    return None if found is None else tuple(sorted(found, key=len))


#: Per concept its marker, its pattern and the strings one of which a matching text contains.
#: Why: the concept patterns are long alternations that Python's ``re`` tries branch by branch
#: at every position of the text (~80 µs a message, a quarter of the intent of every inbound
#: event); a substring test per required string (``str.__contains__``, C) rules most concepts
#: out without a search, and the search decides the rest, so the markers are exactly the
#: patterns' (tests/test_intent_speed.py compares both on the training set and random texts).
_FILTERED_CONCEPTS = [(f"zz{name}", pattern, _concept_filter(pattern)) for name, pattern in _COMPILED_CONCEPTS]


def _concepts_of(norm: str) -> list[str]:
    """The ``zz<concept>`` markers of a normalize()d text: the concepts whose pattern it matches."""
    contains = norm.__contains__
    return [
        marker
        for marker, pattern, needles in _FILTERED_CONCEPTS
        if (needles is None or any(map(contains, needles))) and pattern.search(norm)
    ]


def add_concepts(text: str) -> str:
    """Normalise ``text`` and append a ``zz<concept>`` marker for each keyword concept it hits."""
    return _with_concepts(normalize(text))


def _with_concepts(norm: str) -> str:
    return " ".join([norm, *_concepts_of(norm)])


def load_examples(path: Path | None = None) -> list[dict[str, str]]:
    """Load the shipped labelled examples (``{"text", "intent", "lang"}`` dicts)."""
    source = path or DATA_PATH
    examples: list[dict[str, str]] = []
    with source.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            record = json.loads(line)
            if record.get("intent") not in INTENTS or not str(record.get("text", "")).strip():
                raise ValueError(f"{source.name}:{number}: invalid example {record!r}")
            examples.append(record)
    return examples


def _build_pipeline() -> Any:
    """Return an untrained scikit-learn pipeline (imported lazily: sklearn is heavy)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, Pipeline

    features = FeatureUnion(
        [
            ("words", TfidfVectorizer(preprocessor=add_concepts, ngram_range=(1, 2), sublinear_tf=True)),
            (
                "chars",
                TfidfVectorizer(
                    preprocessor=normalize, analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=1
                ),
            ),
        ]
    )
    model = LogisticRegression(C=10.0, max_iter=1000, solver="newton-cg")
    return Pipeline([("features", features), ("model", model)])


def _split_examples(examples: Iterable[Mapping[str, Any] | Sequence[str]]) -> tuple[list[str], list[str]]:
    """Turn dicts (``text``/``intent``) or ``(text, intent)`` pairs into two lists."""
    texts: list[str] = []
    labels: list[str] = []
    for example in examples:
        if isinstance(example, Mapping):
            text, intent = example["text"], example["intent"]
        else:
            text, intent = example[0], example[1]
        if intent not in INTENTS:
            raise ValueError(f"unknown intent {intent!r}; expected one of {', '.join(INTENTS)}")
        texts.append(str(text))
        labels.append(str(intent))
    if len(set(labels)) < 2:
        raise ValueError("need examples of at least two intents to train")
    return texts, labels


class IntentClassifier:
    """A trained intent model. Create one with :func:`train`; thread-safe for prediction."""

    def __init__(self, pipeline: Any) -> None:
        self._pipeline = pipeline
        self.intents: tuple[str, ...] = tuple(str(c) for c in pipeline.classes_)
        self._direct = _DirectModel.of(pipeline)

    def classify(self, text: str) -> IntentResult:
        """Classify one message; empty/whitespace text gives ``IntentResult("other", 0.0)``."""
        return self.classify_many([text])[0]

    def classify_many(self, texts: Sequence[str]) -> list[IntentResult]:
        """Classify several messages at once (faster than calling :meth:`classify` in a loop)."""
        results: list[IntentResult | None] = [None] * len(texts)
        todo = [(i, t) for i, t in enumerate(texts) if t and normalize(t)]
        if todo:
            if len(todo) == 1 and self._direct is not None:
                probabilities = [self._direct.predict_proba(todo[0][1])]
            else:
                probabilities = self._pipeline.predict_proba([t for _, t in todo])
            for (index, _), row in zip(todo, probabilities):
                best = int(row.argmax())
                confidence = min(1.0, max(0.0, float(row[best])))
                results[index] = IntentResult(self.intents[best], confidence)
        return [r if r is not None else IntentResult("other", 0.0) for r in results]


class _DirectModel:
    """The fitted pipeline's arithmetic for one message, without scikit-learn's per-call machinery.

    Why: one message at a time (every inbound event, in the API's request threads) spent most of
    its ~3 ms in ``FeatureUnion``'s joblib dispatch, input validation and sparse-matrix set-up,
    not in the model. This computes the same numbers directly: per vectorizer the analyzer's
    n-gram counts, ``1 + log(tf)`` (sublinear tf) times idf, L2-normalised; then the logistic
    regression's softmax over ``coef_ . x + intercept_``. :meth:`of` checks it against the
    pipeline on the training vocabulary and returns None (use the pipeline) if any number differs.

    For the shipped pipeline (words with :func:`add_concepts`, character n-grams of
    :func:`normalize`) the message is normalised once for both; the vocabulary look-ups run in
    C (``map`` over the n-gram counts), and one gather and one product score both parts.
    """

    def __init__(self, parts: list[tuple[Any, dict[str, int], Any, int]], coef: Any, intercept: Any) -> None:
        self._parts, self._coef, self._intercept = parts, coef, intercept

    @classmethod
    def of(cls, pipeline: Any) -> _DirectModel | None:
        import numpy as np

        try:
            union, model = pipeline.named_steps["features"], pipeline.named_steps["model"]
            parts, offset = [], 0
            for _, vec in union.transformer_list:
                if not (vec.sublinear_tf and vec.use_idf and vec.norm == "l2" and not vec.binary):
                    return None
                parts.append((_ngrams_of_normalized(vec), vec.vocabulary_, np.asarray(vec.idf_), offset))
                offset += len(vec.vocabulary_)
            if model.coef_.shape != (len(model.classes_), offset) or len(model.classes_) < 3:
                return None
            direct = cls(parts, np.asarray(model.coef_).T.copy(), np.asarray(model.intercept_))
            probe = [
                "Was kostet die 10er-Karte?",
                "Ich möchte einen Trainingsplan",
                "hallo!!",
                "xyz 123",
                "  Kündigung   zum 31.12. bitte,  danke  ",
                "Hi! Can I BOOK a trial? 😊 €",
            ]
            if not np.allclose(pipeline.predict_proba(probe), [direct.predict_proba(t) for t in probe], atol=1e-9):
                logger.warning("direct intent scoring differs from scikit-learn's: using the pipeline")
                return None
            return direct
        except (AttributeError, KeyError, ValueError, TypeError):  # another pipeline shape: use it as it is
            return None

    def predict_proba(self, text: str) -> Any:
        import numpy as np

        norm = normalize(text)
        columns, weights = [], []
        for ngrams, vocabulary, idf, offset in self._parts:
            counts = Counter(ngrams(text, norm))
            if not counts:
                continue
            # Vocabulary look-ups and counts in C (map, fromiter); the arithmetic in numpy.
            index = np.fromiter(map(vocabulary.get, counts, repeat(-1)), dtype=np.intp, count=len(counts))
            known = index >= 0
            if not known.any():
                continue
            index = index[known]
            weight = (np.log(np.fromiter(counts.values(), dtype=np.float64, count=len(counts))[known]) + 1.0) * idf[
                index
            ]
            weight /= np.sqrt(weight @ weight)
            columns.append(index + offset if offset else index)
            weights.append(weight)
        scores = self._intercept
        if weights:
            scores = scores + np.concatenate(weights) @ self._coef[np.concatenate(columns)]
        scores = np.exp(scores - scores.max())
        return scores / scores.sum()


def _ngrams_of_normalized(vec: Any) -> Any:
    """``f(text, normalize(text))`` -> the n-grams ``vec``'s analyzer gives for ``text``.

    The shipped vectorizers preprocess with :func:`add_concepts` (words) and :func:`normalize`
    (characters): both start from ``normalize(text)``, computed once. Any other vectorizer gets
    its own analyzer on the raw text.
    """
    stock = vec.input == "content" and vec.stop_words is None and vec.tokenizer is None
    if stock and vec.analyzer == "word" and vec.preprocessor is add_concepts:
        tokenize, word_ngrams = vec.build_tokenizer(), vec._word_ngrams
        return lambda _text, norm: word_ngrams(tokenize(_with_concepts(norm)))
    if stock and vec.analyzer == "char_wb" and vec.preprocessor is normalize:
        char_wb = vec._char_wb_ngrams
        return lambda _text, norm: char_wb(norm)
    analyze = vec.build_analyzer()
    return lambda text, _norm: analyze(text)


def train(examples: Iterable[Mapping[str, Any] | Sequence[str]]) -> IntentClassifier:
    """Train a classifier on ``{"text", "intent"}`` dicts or ``(text, intent)`` pairs."""
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    texts, labels = _split_examples(examples)
    pipeline = _build_pipeline()
    # The problem is tiny: BLAS threads only add overhead (and thrash on a busy machine).
    with threadpool_limits(limits=1):
        pipeline.fit(texts, labels)
    logger.debug("trained intent classifier on %d examples", len(texts))
    return IntentClassifier(pipeline)


class LazyClassifier:
    """A classifier built by ``build`` on first use, exactly once even when threads ask together."""

    def __init__(self, build: Callable[[], IntentClassifier]) -> None:
        self._build = build
        self._value: IntentClassifier | None = None
        self._lock = threading.Lock()

    def get(self) -> IntentClassifier:
        if self._value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._build()
        return self._value


_DEFAULT = LazyClassifier(lambda: train(load_examples()))


def default_classifier() -> IntentClassifier:
    """Return the process-wide classifier, training it from the shipped data on first use."""
    return _DEFAULT.get()


def classify(text: str) -> IntentResult:
    """Classify a member's message with the built-in model."""
    if not text or not text.strip():
        return IntentResult("other", 0.0)
    return default_classifier().classify(text)


def evaluate(test_fraction: float = 0.25, seed: int = 42) -> dict[str, Any]:
    """Train on a stratified, deterministic split of the shipped data and score the rest.

    Returns ``{"accuracy", "n_train", "n_test", "per_intent"}`` where ``per_intent`` maps each
    intent to ``{"precision", "recall", "f1", "support"}``.
    """
    from sklearn.metrics import precision_recall_fscore_support
    from sklearn.model_selection import train_test_split

    examples = load_examples()
    labels = [e["intent"] for e in examples]
    train_part, test_part = train_test_split(examples, test_size=test_fraction, random_state=seed, stratify=labels)
    classifier = train(train_part)
    expected = [e["intent"] for e in test_part]
    predicted = [r.intent for r in classifier.classify_many([e["text"] for e in test_part])]
    precision, recall, f1, support = precision_recall_fscore_support(
        expected, predicted, labels=list(INTENTS), zero_division=0
    )
    per_intent = {
        intent: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, intent in enumerate(INTENTS)
    }
    correct = sum(e == p for e, p in zip(expected, predicted))
    return {
        "accuracy": correct / len(test_part),
        "n_train": len(train_part),
        "n_test": len(test_part),
        "per_intent": per_intent,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: print ``intent<TAB>confidence`` for each text argument (``argv`` excludes the program)."""
    texts = list(sys.argv[1:] if argv is None else argv)
    if not texts:
        sys.stderr.write("usage: classify TEXT [TEXT...]\n")
        return 2
    for text in texts:
        result = classify(text)
        sys.stdout.write(f"{result.intent}\t{result.confidence:.2f}\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
