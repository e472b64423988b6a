"""Tests for the deterministic workout plan generator."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from engine.ai.exercises import CATALOGUE
from engine.ai.workout import (
    EQUIPMENT,
    GOALS,
    LEVELS,
    WorkoutPlan,
    WorkoutProfile,
    generate_plan,
    profile_from_data,
)

profiles = st.builds(
    WorkoutProfile,
    goal=st.sampled_from(GOALS),
    level=st.sampled_from(LEVELS),
    days_per_week=st.integers(1, 6),
    minutes_per_session=st.integers(15, 120),
    equipment=st.lists(st.sampled_from(EQUIPMENT), unique=True, max_size=len(EQUIPMENT)),
    language=st.sampled_from(["de", "en"]),
)

NAMES_DE = {e.name_de for e in CATALOGUE}
NAMES_EN = {e.name_en for e in CATALOGUE}


def _equipment_by_name() -> dict[str, set[str]]:
    needs: dict[str, set[str]] = {}
    for exercise in CATALOGUE:
        needs[exercise.name_de] = set(exercise.equipment)
        needs[exercise.name_en] = set(exercise.equipment)
    return needs


NEEDS = _equipment_by_name()


@settings(max_examples=150, deadline=None)
@given(profiles)
def test_plan_respects_profile(profile: WorkoutProfile) -> None:
    plan = generate_plan(profile)
    assert len(plan.days) == profile.days_per_week
    for day in plan.days:
        assert day.exercises, "every day has at least one exercise"
        assert day.estimated_minutes <= profile.minutes_per_session
        names = [e.name for e in day.exercises]
        assert len(names) == len(set(names)), "no exercise twice on the same day"
        for exercise in day.exercises:
            assert set(exercise.equipment) <= set(profile.equipment)
            assert NEEDS[exercise.name] <= set(profile.equipment)
            assert exercise.sets >= 1 and exercise.rest_seconds >= 0
            assert exercise.name in (NAMES_DE if profile.language == "de" else NAMES_EN)


@settings(max_examples=60, deadline=None)
@given(profiles)
def test_same_input_gives_same_output(profile: WorkoutProfile) -> None:
    first = generate_plan(profile).to_output()
    again = generate_plan(WorkoutProfile.model_validate(profile.model_dump())).to_output()
    assert first == again
    json.dumps(first)  # JSON-able


@settings(max_examples=80, deadline=None)
@given(profiles)
def test_volume_grows_with_level(profile: WorkoutProfile) -> None:
    volumes = [generate_plan(profile.model_copy(update={"level": level})).total_sets for level in LEVELS]
    assert volumes == sorted(volumes)
    if profile.minutes_per_session >= 30:
        assert volumes[0] < volumes[2]


@settings(max_examples=80, deadline=None)
@given(profiles, st.integers(15, 120))
def test_exercise_count_grows_with_minutes(profile: WorkoutProfile, other_minutes: int) -> None:
    short, long = sorted([profile.minutes_per_session, other_minutes])

    def exercises(minutes: int) -> int:
        plan = generate_plan(profile.model_copy(update={"minutes_per_session": minutes}))
        return sum(len(d.exercises) for d in plan.days)

    def sets(minutes: int) -> int:
        return generate_plan(profile.model_copy(update={"minutes_per_session": minutes})).total_sets

    assert sets(short) <= sets(long)
    assert exercises(short) <= exercises(long) + profile.days_per_week  # one more/less per day from rounding


def test_bodyweight_only_never_needs_equipment() -> None:
    for goal in GOALS:
        plan = generate_plan(WorkoutProfile(goal=goal, level="advanced", days_per_week=6, minutes_per_session=120))
        for day in plan.days:
            assert all(e.equipment == ["bodyweight"] for e in day.exercises)


def test_mat_is_not_implied() -> None:
    plan = generate_plan(WorkoutProfile(goal="mobility", days_per_week=6, minutes_per_session=90))
    names = {e.name for d in plan.days for e in d.exercises}
    assert "Sonnengruß" not in names and "Taube" not in names
    with_mat = generate_plan(
        WorkoutProfile(goal="mobility", days_per_week=6, minutes_per_session=90, equipment=["mat"])
    )
    assert any("mat" in e.equipment for d in with_mat.days for e in d.exercises)


def test_equipment_is_used_when_available() -> None:
    plan = generate_plan(WorkoutProfile(level="intermediate", equipment=["barbell", "pull_up_bar"]))
    used = {item for d in plan.days for e in d.exercises for item in e.equipment}
    assert "barbell" in used


def test_cardio_days_use_available_machine() -> None:
    plan = generate_plan(WorkoutProfile(goal="endurance", days_per_week=2, equipment=["rower"], language="en"))
    assert plan.days[0].exercises[0].name == "Rowing machine"
    assert plan.days[0].exercises[0].reps.endswith("min")


def test_german_text_is_default() -> None:
    plan = generate_plan(WorkoutProfile())
    assert plan.profile.language == "de"
    assert plan.text.startswith("Dein Trainingsplan")
    assert "Tag 1" in plan.text and "Tag 3" in plan.text and "Tag 4" not in plan.text
    assert "Aufwärmen" in plan.text
    assert plan.summary in plan.text


def test_english_text() -> None:
    plan = generate_plan(WorkoutProfile(language="en", days_per_week=2))
    assert plan.text.startswith("Your training plan")
    assert "Day 2" in plan.text and "Warm-up" in plan.text


def test_to_output_shape() -> None:
    output = generate_plan(WorkoutProfile(days_per_week=1)).to_output()
    assert set(output) >= {"days", "summary", "text", "profile"}
    exercise = output["days"][0]["exercises"][0]
    assert set(exercise) >= {"name", "sets", "reps", "rest_seconds", "equipment"}
    assert WorkoutPlan.model_validate(output).to_output() == output


def test_profile_accepts_camel_case_and_snake_case() -> None:
    camel = WorkoutProfile.model_validate({"daysPerWeek": 4, "minutesPerSession": 60, "equipment": ["dumbbells"]})
    snake = WorkoutProfile(days_per_week=4, minutes_per_session=60, equipment=["dumbbells"])
    assert camel == snake
    assert camel.equipment == ["bodyweight", "dumbbells"]


@pytest.mark.parametrize(
    "data",
    [
        {"daysPerWeek": 0},
        {"daysPerWeek": 7},
        {"minutesPerSession": 10},
        {"minutesPerSession": 121},
        {"goal": "flying"},
        {"level": "godlike"},
        {"equipment": ["spaceship"]},
        {"language": "fr"},
    ],
)
def test_profile_rejects_out_of_range_values(data: dict) -> None:
    with pytest.raises(ValidationError):
        WorkoutProfile.model_validate(data)


def test_profile_from_data_defaults() -> None:
    profile = profile_from_data({})
    assert profile == WorkoutProfile(
        goal="strength",
        level="beginner",
        days_per_week=3,
        minutes_per_session=45,
        equipment=["bodyweight"],
        language="de",
    )
    assert profile_from_data(None) == profile


@pytest.mark.parametrize(
    ("goal", "expected"),
    [
        ("Muskelaufbau", "strength"),
        ("abnehmen", "weight_loss"),
        ("Gewicht verlieren", "weight_loss"),
        ("Beweglichkeit", "mobility"),
        ("Ausdauer", "endurance"),
        ("strength", "strength"),
        ("lose weight", "weight_loss"),
        ("etwas Unverständliches", "strength"),
    ],
)
def test_profile_from_data_maps_goal_words(goal: str, expected: str) -> None:
    assert profile_from_data({"goal": goal}).goal == expected


def test_profile_from_data_reads_custom_fields() -> None:
    profile = profile_from_data(
        {
            "customFields": {
                "ziel": "Abnehmen",
                "erfahrung": "Fortgeschritten",
                "tage": "4x pro Woche",
                "dauer": "60 Minuten",
                "ausstattung": "Kurzhanteln, Matte und Laufband",
                "sprache": "English",
            }
        }
    )
    assert profile.goal == "weight_loss"
    assert profile.level == "intermediate"
    assert profile.days_per_week == 4
    assert profile.minutes_per_session == 60
    assert profile.equipment == ["bodyweight", "dumbbells", "mat", "treadmill"]
    assert profile.language == "en"


def test_profile_from_data_clamps_and_ignores_garbage() -> None:
    profile = profile_from_data(
        {"daysPerWeek": 12, "minutesPerSession": "5", "level": "Profi", "language": "fr", "equipment": "Raumschiff"}
    )
    assert profile.days_per_week == 6
    assert profile.minutes_per_session == 15
    assert profile.level == "advanced"
    assert profile.language == "de"
    assert profile.equipment == ["bodyweight"]


def test_generate_plan_accepts_loose_data() -> None:
    plan = generate_plan({"goal": "Muskelaufbau", "daysPerWeek": 2, "equipment": ["Kurzhanteln"]})
    assert len(plan.days) == 2
    assert plan.profile.goal == "strength"
