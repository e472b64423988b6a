"""Deterministic workout plan generator.

``generate_plan(profile)`` turns a :class:`WorkoutProfile` (goal, level, days per week,
minutes per session, equipment, language) into a :class:`WorkoutPlan`. There is no
randomness: the same profile always gives the same plan.

How a session is sized: a warm-up and a cool-down are taken off the session length; the
rest is filled with sets of ``work + rest`` seconds (rest shrinks with level, as training
density does), capped by a per-level volume limit so beginners are not overloaded. The
resulting total sets per session therefore never decrease from beginner to advanced, and
the estimated session time never exceeds ``minutes_per_session``.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from engine.ai.exercises import CATALOGUE, Exercise

logger = logging.getLogger(__name__)

Goal = Literal["strength", "weight_loss", "mobility", "endurance"]
Level = Literal["beginner", "intermediate", "advanced"]
Language = Literal["de", "en"]
EQUIPMENT: tuple[str, ...] = (
    "bodyweight",
    "dumbbells",
    "barbell",
    "kettlebell",
    "resistance_band",
    "machine",
    "pull_up_bar",
    "mat",
    "bike",
    "rower",
    "treadmill",
)
LEVELS: tuple[str, ...] = ("beginner", "intermediate", "advanced")
GOALS: tuple[str, ...] = ("strength", "weight_loss", "mobility", "endurance")

_MODEL_CONFIG = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class WorkoutProfile(BaseModel):
    """Who the plan is for. Accepts snake_case names and camelCase aliases (``daysPerWeek``)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    goal: Goal = "strength"
    level: Level = "beginner"
    days_per_week: int = Field(3, ge=1, le=6)
    minutes_per_session: int = Field(45, ge=15, le=120)
    equipment: list[str] = Field(default_factory=lambda: ["bodyweight"])
    language: Language = "de"

    @field_validator("equipment", mode="before")
    @classmethod
    def _normalise_equipment(cls, value: Any) -> list[str]:
        """Accept a list or comma-separated string; always include bodyweight; sort canonically."""
        items = [value] if isinstance(value, str) else list(value or [])
        names: set[str] = {"bodyweight"}
        for item in items:
            for part in str(item).split(","):
                name = part.strip().lower().replace("-", "_").replace(" ", "_")
                if not name:
                    continue
                if name not in EQUIPMENT:
                    raise ValueError(f"unknown equipment {part.strip()!r}; expected some of {', '.join(EQUIPMENT)}")
                names.add(name)
        return [e for e in EQUIPMENT if e in names]


class PlanExercise(BaseModel):
    """One exercise of a training day. ``reps`` is text: ``"8-10"``, ``"40 s"`` or ``"20 min"``."""

    model_config = _MODEL_CONFIG

    name: str
    sets: int
    reps: str
    rest_seconds: int
    equipment: list[str]


class PlanDay(BaseModel):
    """One training day."""

    model_config = _MODEL_CONFIG

    name: str
    focus: str
    exercises: list[PlanExercise]
    warmup_minutes: int
    cooldown_minutes: int
    estimated_minutes: int


class WorkoutPlan(BaseModel):
    """A generated plan: structured days plus a readable ``text`` in the profile's language."""

    model_config = _MODEL_CONFIG

    profile: WorkoutProfile
    days: list[PlanDay]
    summary: str
    text: str

    @property
    def total_sets(self) -> int:
        """Total number of sets over the whole week (the plan's volume)."""
        return sum(e.sets for d in self.days for e in d.exercises)

    def to_output(self) -> dict[str, Any]:
        """Return a JSON-able dict (snake_case keys) for action outputs and templates."""
        return self.model_dump(mode="json")


# ---------------------------------------------------------------------------------------
# tuning tables

_REST = {  # seconds of rest per set, by goal and level
    "strength": (90, 75, 60),
    "weight_loss": (45, 30, 20),
    "endurance": (45, 30, 20),
    "mobility": (20, 15, 10),
}
_SETS = (2, 3, 4)  # sets per exercise by level
_SETS_PER_MINUTE = (0.35, 0.45, 0.6)  # volume cap: sets per session minute, by level
_REPS_WORK_SECONDS = 45  # time estimate for one set of a reps exercise
_TIMED_SECONDS = (30, 40, 45)  # work interval / hold by level
_MAX_SETS_PER_EXERCISE = 6
_REPS = {
    "strength": ("10-12", "8-10", "5-8"),
    "weight_loss": ("12-15", "15", "15-20"),
    "endurance": ("15", "15-20", "20-25"),
    "mobility": ("8-10", "10", "12"),
}

_FOCI: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "full_body": ("Ganzkörper", "Full body", ("legs", "chest", "back", "glutes", "shoulders", "core", "arms")),
    "upper": ("Oberkörper", "Upper body", ("chest", "back", "shoulders", "back", "chest", "arms", "core")),
    "lower": ("Unterkörper & Rumpf", "Lower body & core", ("legs", "glutes", "legs", "core", "glutes", "core")),
    "push": (
        "Drücken: Brust, Schultern, Trizeps",
        "Push: chest, shoulders, triceps",
        ("chest", "shoulders", "chest", "arms", "shoulders", "core"),
    ),
    "pull": ("Ziehen: Rücken, Bizeps", "Pull: back, biceps", ("back", "back", "arms", "shoulders", "core", "back")),
    "legs": ("Beine & Po", "Legs & glutes", ("legs", "glutes", "legs", "glutes", "core", "legs")),
    "circuit": (
        "Ganzkörper-Zirkel",
        "Full-body circuit",
        ("cardio", "legs", "chest", "back", "core", "full_body", "glutes", "shoulders"),
    ),
    "cardio": ("Ausdauer", "Cardio", ("core", "legs", "cardio", "glutes", "back")),
    "mobility_lower": (
        "Mobilität: Hüfte & Beine",
        "Mobility: hips & legs",
        ("hips", "legs", "glutes", "hips", "spine", "core"),
    ),
    "mobility_upper": (
        "Mobilität: Wirbelsäule & Schultern",
        "Mobility: spine & shoulders",
        ("spine", "shoulders", "back", "chest", "spine", "shoulders"),
    ),
    "mobility_flow": ("Ganzkörper-Flow", "Full-body flow", ("spine", "hips", "shoulders", "legs", "core", "back")),
}

_SPLITS: dict[str, dict[int, tuple[str, ...]]] = {
    "strength": {
        1: ("full_body",),
        2: ("full_body", "full_body"),
        3: ("full_body", "full_body", "full_body"),
        4: ("upper", "lower", "upper", "lower"),
        5: ("push", "pull", "legs", "upper", "lower"),
        6: ("push", "pull", "legs", "push", "pull", "legs"),
    },
    "weight_loss": {n: tuple("circuit" if i % 2 == 0 else "cardio" for i in range(n)) for n in range(1, 7)},
    "endurance": {n: tuple("cardio" if i % 2 == 0 else "circuit" for i in range(n)) for n in range(1, 7)},
    "mobility": {
        n: tuple(("mobility_flow", "mobility_lower", "mobility_upper")[i % 3] for i in range(n)) for n in range(1, 7)
    },
}

_CARDIO_SHARE = {"weight_loss": 0.5, "endurance": 0.6}  # share of a cardio day spent on the cardio block

_TEXTS: dict[str, dict[str, Any]] = {
    "de": {
        "goal": {
            "strength": "Kraft & Muskelaufbau",
            "weight_loss": "Abnehmen",
            "mobility": "Beweglichkeit",
            "endurance": "Ausdauer",
        },
        "level": {"beginner": "Anfänger", "intermediate": "Fortgeschritten", "advanced": "Sehr fortgeschritten"},
        "equipment": {
            "bodyweight": "Körpergewicht",
            "dumbbells": "Kurzhanteln",
            "barbell": "Langhantel",
            "kettlebell": "Kettlebell",
            "resistance_band": "Widerstandsband",
            "machine": "Geräte",
            "pull_up_bar": "Klimmzugstange",
            "mat": "Matte",
            "bike": "Ergometer",
            "rower": "Rudergerät",
            "treadmill": "Laufband",
        },
        "day": "Tag",
        "title": "Dein Trainingsplan",
        "summary": "{days} Trainingstage pro Woche à ca. {minutes} Minuten · Ziel: {goal} · Level: {level} · "
        "Ausrüstung: {equipment}.",
        "warmup": "Aufwärmen: {m} Min. locker bewegen und mobilisieren",
        "cooldown": "Cool-down: {m} Min. lockern und dehnen",
        "rest": "Pause",
        "tip": "Tipp: Steigere dich langsam und achte auf saubere Technik. "
        "Bei Schmerzen bitte abbrechen und mit unserem Team sprechen.",
    },
    "en": {
        "goal": {
            "strength": "strength & muscle",
            "weight_loss": "weight loss",
            "mobility": "mobility",
            "endurance": "endurance",
        },
        "level": {"beginner": "beginner", "intermediate": "intermediate", "advanced": "advanced"},
        "equipment": {
            "bodyweight": "bodyweight",
            "dumbbells": "dumbbells",
            "barbell": "barbell",
            "kettlebell": "kettlebell",
            "resistance_band": "resistance band",
            "machine": "machines",
            "pull_up_bar": "pull-up bar",
            "mat": "mat",
            "bike": "bike",
            "rower": "rower",
            "treadmill": "treadmill",
        },
        "day": "Day",
        "title": "Your training plan",
        "summary": "{days} training days per week, about {minutes} minutes each · Goal: {goal} · Level: {level} · "
        "Equipment: {equipment}.",
        "warmup": "Warm-up: {m} min easy movement and mobility",
        "cooldown": "Cool-down: {m} min easy stretching",
        "rest": "rest",
        "tip": "Tip: progress gradually and focus on good form. Stop if anything hurts and talk to our team.",
    },
}


# ---------------------------------------------------------------------------------------
# profile from loose data (trigger data, a lead's custom fields)

_GOAL_WORDS: tuple[tuple[str, str], ...] = (  # first match wins ("Muskelaufbau" contains "lauf")
    ("strength", r"kraft|muskel|strength|muscle|staerk|strong|hypertroph|aufbau|bodybuilding"),
    ("weight_loss", r"abnehm|gewicht|fett|weight|lose|fat|slim|abspeck|schlank"),
    ("mobility", r"beweglich|mobil|dehn|flexib|stretch|yoga|gelenk|ruecken|back pain"),
    ("endurance", r"ausdauer|kondition|\blauf|cardio|endurance|stamina|\brun|marathon|jogg"),
)
_LEVEL_WORDS: tuple[tuple[str, str], ...] = (
    ("advanced", r"advanced|profi|expert|sehr fortgeschritten|erfahren|pro\b|3"),
    ("intermediate", r"intermediate|fortgeschritten|mittel|medium|etwas erfahrung|2"),
    ("beginner", r"beginner|anfaeng|einsteiger|neu|novice|start|1"),
)
_EQUIPMENT_WORDS: tuple[tuple[str, str], ...] = (
    ("dumbbells", r"dumbbell|kurzhantel|hanteln$|^hantel"),
    ("barbell", r"barbell|langhantel"),
    ("kettlebell", r"kettle"),
    ("treadmill", r"treadmill|laufband"),
    ("resistance_band", r"band|theraband|tube"),
    ("machine", r"machine|maschine|geraet|studio|gym"),
    ("pull_up_bar", r"pull.?up|klimmzug|stange"),
    ("mat", r"\bmat|matte"),
    ("bike", r"bike|fahrrad|ergometer|rad\b|spinning"),
    ("rower", r"rower|rowing|ruder"),
    ("bodyweight", r"bodyweight|body weight|koerpergewicht|ohne|keine|none|nothing|nichts"),
)
_KEYS = {
    "goal": ("goal", "ziel", "trainingGoal", "training_goal", "trainingsziel"),
    "level": ("level", "niveau", "erfahrung", "experience", "fitnessLevel", "fitness_level"),
    "days_per_week": ("daysPerWeek", "days_per_week", "days", "tage", "tageProWoche", "trainingDays"),
    "minutes_per_session": ("minutesPerSession", "minutes_per_session", "minutes", "minuten", "duration", "dauer"),
    "equipment": ("equipment", "ausstattung", "ausruestung", "geraete"),
    "language": ("language", "lang", "sprache", "locale"),
}
_NESTED = ("customFields", "custom_fields", "fields", "data", "lead")


_UMLAUTS: dict[str, str | int | None] = {"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"}


def _fold(text: str) -> str:
    return text.strip().lower().translate(str.maketrans(_UMLAUTS))


def _lookup(data: Mapping[str, Any], field: str) -> Any:
    """Find ``field`` under any of its known keys, at the top level or in a nested dict."""
    for key in _KEYS[field]:
        if data.get(key) not in (None, ""):
            return data[key]
    for nested in _NESTED:
        inner = data.get(nested)
        if isinstance(inner, Mapping):
            found = _lookup(inner, field)
            if found is not None:
                return found
    return None


def _match_word(value: Any, table: tuple[tuple[str, str], ...], canonical: tuple[str, ...]) -> str | None:
    text = _fold(str(value))
    if text in canonical:
        return text
    for name, pattern in table:
        if re.search(pattern, text):
            return name
    return None


def _parse_int(value: Any, low: int, high: int) -> int | None:
    match = re.search(r"\d+", str(value))
    return min(high, max(low, int(match.group()))) if match else None


def _parse_equipment(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, (list, tuple, set)) else re.split(r"[,;/+&]|\bund\b|\band\b", str(value))
    found: list[str] = []
    for item in items:
        name = _match_word(item, _EQUIPMENT_WORDS, EQUIPMENT)
        if name:
            found.append(name)
        elif str(item).strip():
            logger.debug("ignoring unknown equipment %r", item)
    return tuple(found)


def profile_from_data(data: Mapping[str, Any] | None) -> WorkoutProfile:
    """Build a profile from loose data such as trigger data or a lead's custom fields.

    Understands camelCase/snake_case/German keys (``goal``/``ziel``, ``daysPerWeek``/``tage``,
    ...), German and English values ("Muskelaufbau", "abnehmen", "Anfänger", "Kurzhanteln,
    Matte", "3 Tage", "45 min"), looks into nested ``customFields``, and falls back to the
    defaults (strength, beginner, 3 days, 45 minutes, bodyweight, German) for anything missing
    or not understood. Numbers are clamped into the allowed ranges.
    """
    data = data or {}
    values: dict[str, Any] = {}
    raw = {field: _lookup(data, field) for field in _KEYS}
    if raw["goal"] is not None:
        values["goal"] = _match_word(raw["goal"], _GOAL_WORDS, GOALS)
    if raw["level"] is not None:
        values["level"] = _match_word(raw["level"], _LEVEL_WORDS, LEVELS)
    if raw["days_per_week"] is not None:
        values["days_per_week"] = _parse_int(raw["days_per_week"], 1, 6)
    if raw["minutes_per_session"] is not None:
        values["minutes_per_session"] = _parse_int(raw["minutes_per_session"], 15, 120)
    if raw["equipment"] is not None:
        values["equipment"] = _parse_equipment(raw["equipment"])
    if raw["language"] is not None:
        language = _fold(str(raw["language"]))[:2]
        values["language"] = language if language in ("de", "en") else None
    return WorkoutProfile(**{k: v for k, v in values.items() if v is not None})


# ---------------------------------------------------------------------------------------
# generation


def _session_budget(profile: WorkoutProfile) -> tuple[int, int, int]:
    """Return (warm-up minutes, cool-down minutes, seconds left for the main part)."""
    minutes = profile.minutes_per_session
    warmup = min(10, max(3, round(minutes * 0.15)))
    cooldown = min(5, max(2, round(minutes * 0.1)))
    return warmup, cooldown, (minutes - warmup - cooldown) * 60


def _allowed(exercise: Exercise, equipment: list[str]) -> bool:
    return all(item in equipment for item in exercise.equipment)


def _candidates(group: str, profile: WorkoutProfile, used: set[str], level_index: int) -> list[Exercise]:
    """Exercises for a muscle group that the member can do, best first."""
    pool = [
        e
        for e in CATALOGUE
        if group in e.muscles
        and e.kind != "cardio"
        and e.key not in used
        and e.difficulty <= level_index + 1
        and _allowed(e, profile.equipment)
    ]
    suited = [e for e in pool if profile.goal in e.goals]
    pool = suited or [e for e in pool if profile.goal != "mobility" or "mobility" in e.goals]
    target = level_index + 1
    return sorted(pool, key=lambda e: (abs(e.difficulty - target), not e.equipment, e.key))


def _cardio_block(profile: WorkoutProfile, occurrence: int) -> Exercise:
    machines = [e for e in CATALOGUE if e.kind == "cardio" and e.equipment and _allowed(e, profile.equipment)]
    outdoor = [e for e in CATALOGUE if e.kind == "cardio" and not e.equipment]
    options = machines or outdoor
    return options[occurrence % len(options)]


def _pick_exercises(profile: WorkoutProfile, focus: str, count: int, occurrence: int) -> list[Exercise]:
    """Fill the focus's muscle-group slots in order; rotate between top choices across days."""
    level_index = LEVELS.index(profile.level)
    slots = _FOCI[focus][2]
    picked: list[Exercise] = []
    used: set[str] = set()
    misses = 0
    position = 0
    while len(picked) < count and misses < len(slots):
        group = slots[position % len(slots)]
        position += 1
        options = _candidates(group, profile, used, level_index)
        if not options:
            misses += 1
            continue
        misses = 0
        choice = options[occurrence % min(2, len(options))]
        picked.append(choice)
        used.add(choice.key)
    return picked


def _distribute_sets(total: int, count: int) -> list[int]:
    """Split ``total`` sets evenly over ``count`` exercises (earlier ones get the remainder)."""
    if count == 0:
        return []
    return [min(_MAX_SETS_PER_EXERCISE, total // count + (1 if i < total % count else 0)) for i in range(count)]


def _work_seconds(exercise: Exercise, level_index: int) -> int:
    return _TIMED_SECONDS[level_index] if exercise.kind == "timed" else _REPS_WORK_SECONDS


def _reps_text(exercise: Exercise, profile: WorkoutProfile, level_index: int) -> str:
    if exercise.kind == "timed":
        return f"{_TIMED_SECONDS[level_index]} s"
    reps = _REPS[profile.goal][level_index]
    if exercise.key in {"lunge", "db_lunge", "split_squat", "single_leg_bridge", "db_row", "cossack_squat"}:
        reps += " pro Seite" if profile.language == "de" else " per side"
    return reps


def _build_day(profile: WorkoutProfile, index: int, focus: str, occurrence: int) -> PlanDay:
    """Build one training day within the session's time budget."""
    level_index = LEVELS.index(profile.level)
    warmup, cooldown, available = _session_budget(profile)
    rest = _REST[profile.goal][level_index]
    exercises: list[PlanExercise] = []
    used_seconds = 0
    if focus == "cardio":
        block = _cardio_block(profile, occurrence)
        block_minutes = max(5, int(available / 60 * _CARDIO_SHARE[profile.goal]))
        exercises.append(_plan_exercise(block, profile, 1, f"{block_minutes} min", 0))
        used_seconds = block_minutes * 60
    remaining = available - used_seconds
    total_sets = min(
        remaining // (_REPS_WORK_SECONDS + rest), int(profile.minutes_per_session * _SETS_PER_MINUTE[level_index])
    )
    base = _SETS[level_index]
    chosen = _pick_exercises(profile, focus, max(1, math.ceil(total_sets / base)), occurrence) if total_sets > 0 else []
    for exercise, sets in zip(chosen, _distribute_sets(total_sets, len(chosen))):
        exercises.append(_plan_exercise(exercise, profile, sets, _reps_text(exercise, profile, level_index), rest))
        used_seconds += sets * (_work_seconds(exercise, level_index) + rest)
    de_name, en_name, _ = _FOCI[focus]
    texts = _TEXTS[profile.language]
    focus_name = de_name if profile.language == "de" else en_name
    return PlanDay(
        name=f"{texts['day']} {index + 1}",
        focus=focus_name,
        exercises=exercises,
        warmup_minutes=warmup,
        cooldown_minutes=cooldown,
        estimated_minutes=warmup + cooldown + math.ceil(used_seconds / 60),
    )


def _plan_exercise(exercise: Exercise, profile: WorkoutProfile, sets: int, reps: str, rest: int) -> PlanExercise:
    return PlanExercise(
        name=exercise.name(profile.language),
        sets=sets,
        reps=reps,
        rest_seconds=rest,
        equipment=list(exercise.equipment) or ["bodyweight"],
    )


def _render_text(profile: WorkoutProfile, days: list[PlanDay], summary: str) -> str:
    """Render the plan as readable text (fits a WhatsApp message or an e-mail)."""
    texts = _TEXTS[profile.language]
    lines = [f"{texts['title']}", summary, ""]
    for day in days:
        lines.append(f"{day.name} – {day.focus}")
        lines.append(f"• {texts['warmup'].format(m=day.warmup_minutes)}")
        for number, exercise in enumerate(day.exercises, start=1):
            rest = f", {exercise.rest_seconds} s {texts['rest']}" if exercise.rest_seconds else ""
            is_block = exercise.sets == 1 and exercise.reps.endswith("min")
            volume = exercise.reps if is_block else f"{exercise.sets} × {exercise.reps}"
            lines.append(f"{number}. {exercise.name}: {volume}{rest}")
        lines.append(f"• {texts['cooldown'].format(m=day.cooldown_minutes)}")
        lines.append("")
    lines.append(texts["tip"])
    return "\n".join(lines)


def generate_plan(profile: WorkoutProfile | Mapping[str, Any]) -> WorkoutPlan:
    """Generate the weekly plan for ``profile`` (a :class:`WorkoutProfile` or loose data)."""
    if not isinstance(profile, WorkoutProfile):
        profile = profile_from_data(profile)
    split = _SPLITS[profile.goal][profile.days_per_week]
    seen: dict[str, int] = {}
    days: list[PlanDay] = []
    for index, focus in enumerate(split):
        days.append(_build_day(profile, index, focus, seen.get(focus, 0)))
        seen[focus] = seen.get(focus, 0) + 1
    texts = _TEXTS[profile.language]
    summary = texts["summary"].format(
        days=profile.days_per_week,
        minutes=profile.minutes_per_session,
        goal=texts["goal"][profile.goal],
        level=texts["level"][profile.level],
        equipment=", ".join(texts["equipment"][e] for e in profile.equipment),
    )
    logger.debug("generated %s plan with %d days", profile.goal, len(days))
    return WorkoutPlan(profile=profile, days=days, summary=summary, text=_render_text(profile, days, summary))
