"""Exercise catalogue for the workout plan generator (names in German and English).

Each exercise lists the equipment it *needs* (empty = bodyweight only), the goals it suits
(``S`` strength, ``W`` weight loss, ``M`` mobility, ``E`` endurance), the muscle groups it
trains, its kind and a difficulty from 1 (easy) to 3 (needs experience).

Kinds: ``reps`` (counted repetitions), ``timed`` (holds and intervals, shown in seconds),
``cardio`` (a continuous block on a machine or outdoors, shown in minutes).
"""

from __future__ import annotations

from dataclasses import dataclass

GOAL_CODES = {"S": "strength", "W": "weight_loss", "M": "mobility", "E": "endurance"}


@dataclass(frozen=True)
class Exercise:
    """One catalogue entry."""

    key: str
    name_de: str
    name_en: str
    equipment: tuple[str, ...]
    goals: frozenset[str]
    muscles: frozenset[str]
    kind: str = "reps"
    difficulty: int = 1

    def name(self, language: str) -> str:
        """The exercise name in ``language`` (``de`` or ``en``)."""
        return self.name_de if language == "de" else self.name_en


def _ex(
    key: str, de: str, en: str, equipment: str, goals: str, muscles: str, kind: str = "reps", difficulty: int = 1
) -> Exercise:
    return Exercise(
        key=key,
        name_de=de,
        name_en=en,
        equipment=tuple(equipment.split()),
        goals=frozenset(GOAL_CODES[c] for c in goals),
        muscles=frozenset(muscles.split()),
        kind=kind,
        difficulty=difficulty,
    )


CATALOGUE: tuple[Exercise, ...] = (
    # bodyweight: strength and conditioning
    _ex("squat", "Kniebeugen", "Bodyweight squats", "", "SWE", "legs glutes"),
    _ex("lunge", "Ausfallschritte", "Lunges", "", "SWE", "legs glutes"),
    _ex("split_squat", "Bulgarische Kniebeugen", "Bulgarian split squats", "", "SE", "legs glutes", difficulty=2),
    _ex("glute_bridge", "Glute Bridge", "Glute bridges", "", "SWM", "glutes core"),
    _ex(
        "single_leg_bridge", "Einbeinige Glute Bridge", "Single-leg glute bridges", "", "S", "glutes legs", difficulty=2
    ),
    _ex("knee_pushup", "Liegestütze auf den Knien", "Knee push-ups", "", "SW", "chest arms"),
    _ex("pushup", "Liegestütze", "Push-ups", "", "SWE", "chest arms shoulders", difficulty=2),
    _ex("pike_pushup", "Pike Push-ups", "Pike push-ups", "", "S", "shoulders arms", difficulty=2),
    _ex("bench_dip", "Dips am Stuhl", "Bench dips", "", "SE", "arms chest"),
    _ex("superman", "Superman", "Superman raises", "", "SM", "back"),
    _ex("snow_angel", "Snow Angels in Bauchlage", "Prone snow angels", "", "SM", "back shoulders"),
    _ex("plank", "Unterarmstütz (Plank)", "Plank", "", "SWE", "core", "timed"),
    _ex("side_plank", "Seitstütz", "Side plank", "", "SE", "core", "timed", 2),
    _ex("dead_bug", "Dead Bug", "Dead bugs", "", "SM", "core"),
    _ex("wall_sit", "Wandsitzen", "Wall sit", "", "SE", "legs", "timed"),
    _ex("calf_raise", "Wadenheben", "Calf raises", "", "SE", "legs"),
    _ex("mountain_climber", "Bergsteiger (Mountain Climbers)", "Mountain climbers", "", "WE", "core cardio", "timed"),
    _ex("jumping_jack", "Hampelmann", "Jumping jacks", "", "WE", "cardio full_body", "timed"),
    _ex("high_knees", "Kniehebelauf", "High knees", "", "WE", "cardio legs", "timed"),
    _ex("burpee", "Burpees", "Burpees", "", "WE", "full_body cardio chest", difficulty=2),
    _ex("squat_jump", "Sprungkniebeugen", "Jump squats", "", "WE", "legs glutes cardio", difficulty=2),
    _ex("bear_crawl", "Bärengang", "Bear crawl", "", "WE", "full_body core shoulders", "timed", 2),
    _ex("skater", "Eisschnellläufer-Sprünge", "Skater jumps", "", "WE", "legs glutes cardio", "timed", 2),
    _ex("run", "Lockerer Dauerlauf (draußen)", "Easy run (outdoors)", "", "WE", "cardio", "cardio"),
    # bodyweight: mobility
    _ex("cat_cow", "Katze-Kuh", "Cat-cow", "", "M", "spine back", "timed"),
    _ex("worlds_greatest", "World's Greatest Stretch", "World's greatest stretch", "", "M", "hips spine legs", "timed"),
    _ex(
        "hip_flexor",
        "Hüftbeuger-Dehnung im Ausfallschritt",
        "Kneeling hip flexor stretch",
        "",
        "M",
        "hips legs",
        "timed",
    ),
    _ex("hip_90_90", "90/90 Hüftrotation", "90/90 hip switches", "", "M", "hips glutes"),
    _ex("thoracic_rotation", "Rotation der Brustwirbelsäule", "Thoracic rotations", "", "M", "spine shoulders"),
    _ex("childs_pose", "Kindhaltung", "Child's pose", "", "M", "spine back", "timed"),
    _ex("down_dog", "Herabschauender Hund", "Downward dog", "", "M", "shoulders legs spine", "timed"),
    _ex("cossack_squat", "Kosakenkniebeuge", "Cossack squats", "", "MS", "hips legs", difficulty=2),
    _ex("deep_squat_hold", "Tiefe Hocke halten", "Deep squat hold", "", "M", "hips legs", "timed"),
    _ex("arm_circles", "Armkreisen", "Arm circles", "", "M", "shoulders", "timed"),
    _ex("hamstring_stretch", "Dehnung der Beinrückseite", "Hamstring stretch", "", "M", "legs", "timed"),
    _ex("cobra", "Kobra", "Cobra pose", "", "M", "spine chest", "timed"),
    _ex("wall_angel", "Wandengel", "Wall angels", "", "M", "shoulders back"),
    # mat
    _ex("sun_salutation", "Sonnengruß", "Sun salutation", "mat", "ME", "full_body spine", "timed"),
    _ex("pigeon", "Taube", "Pigeon pose", "mat", "M", "hips glutes", "timed"),
    _ex("hollow_hold", "Hollow Hold", "Hollow hold", "mat", "SE", "core", "timed", 2),
    _ex("bird_dog", "Vierfüßlerstand diagonal (Bird Dog)", "Bird dogs", "mat", "SM", "core back"),
    # dumbbells
    _ex("db_goblet_squat", "Goblet Squat mit Kurzhantel", "Dumbbell goblet squats", "dumbbells", "SWE", "legs glutes"),
    _ex(
        "db_rdl",
        "Rumänisches Kreuzheben mit Kurzhanteln",
        "Dumbbell Romanian deadlifts",
        "dumbbells",
        "SW",
        "glutes legs back",
        difficulty=2,
    ),
    _ex("db_floor_press", "Kurzhantel-Bodendrücken", "Dumbbell floor press", "dumbbells", "SW", "chest arms"),
    _ex("db_row", "Einarmiges Kurzhantelrudern", "One-arm dumbbell rows", "dumbbells", "SWE", "back arms"),
    _ex("db_press", "Kurzhantel-Schulterdrücken", "Dumbbell shoulder press", "dumbbells", "SW", "shoulders arms"),
    _ex("db_curl", "Bizepscurls mit Kurzhanteln", "Dumbbell biceps curls", "dumbbells", "S", "arms"),
    _ex(
        "db_lunge",
        "Ausfallschritte mit Kurzhanteln",
        "Dumbbell lunges",
        "dumbbells",
        "SWE",
        "legs glutes",
        difficulty=2,
    ),
    _ex(
        "db_thruster",
        "Kurzhantel-Thruster",
        "Dumbbell thrusters",
        "dumbbells",
        "WE",
        "full_body legs shoulders cardio",
        difficulty=2,
    ),
    _ex("db_lateral_raise", "Seitheben mit Kurzhanteln", "Dumbbell lateral raises", "dumbbells", "S", "shoulders"),
    _ex("db_triceps", "Trizepsdrücken über Kopf", "Overhead triceps extensions", "dumbbells", "S", "arms"),
    # barbell
    _ex("bb_squat", "Kniebeugen mit Langhantel", "Barbell back squats", "barbell", "S", "legs glutes", difficulty=2),
    _ex("bb_deadlift", "Kreuzheben", "Deadlifts", "barbell", "S", "back glutes legs", difficulty=3),
    _ex("bb_bench", "Bankdrücken", "Bench press", "barbell", "S", "chest arms shoulders", difficulty=2),
    _ex("bb_row", "Langhantelrudern", "Barbell rows", "barbell", "S", "back arms", difficulty=2),
    _ex(
        "bb_ohp",
        "Schulterdrücken stehend mit Langhantel",
        "Standing overhead press",
        "barbell",
        "S",
        "shoulders arms",
        difficulty=2,
    ),
    _ex("bb_hip_thrust", "Hip Thrust mit Langhantel", "Barbell hip thrusts", "barbell", "S", "glutes", difficulty=2),
    # kettlebell
    _ex(
        "kb_swing",
        "Kettlebell Swings",
        "Kettlebell swings",
        "kettlebell",
        "SWE",
        "glutes back full_body cardio",
        difficulty=2,
    ),
    _ex(
        "kb_goblet_squat", "Goblet Squat mit Kettlebell", "Kettlebell goblet squats", "kettlebell", "SW", "legs glutes"
    ),
    _ex(
        "kb_press",
        "Kettlebell-Schulterdrücken",
        "Kettlebell overhead press",
        "kettlebell",
        "S",
        "shoulders arms",
        difficulty=2,
    ),
    _ex("kb_row", "Kettlebell-Rudern", "Kettlebell rows", "kettlebell", "SW", "back arms"),
    _ex("kb_halo", "Kettlebell Halo", "Kettlebell halos", "kettlebell", "MS", "shoulders core"),
    _ex("kb_getup", "Turkish Get-up", "Turkish get-ups", "kettlebell", "SM", "full_body core shoulders", difficulty=3),
    # resistance band
    _ex("band_pull_apart", "Band Pull-Aparts", "Band pull-aparts", "resistance_band", "SM", "back shoulders"),
    _ex("band_row", "Rudern mit Widerstandsband", "Band rows", "resistance_band", "SWE", "back arms"),
    _ex("band_press", "Brustpresse mit Widerstandsband", "Band chest press", "resistance_band", "SW", "chest arms"),
    _ex("band_walk", "Seitliche Schritte mit Miniband", "Banded lateral walks", "resistance_band", "SM", "glutes hips"),
    _ex("band_face_pull", "Face Pulls mit Band", "Band face pulls", "resistance_band", "SM", "shoulders back"),
    _ex(
        "band_dislocate",
        "Schulterkreisen mit Band",
        "Band shoulder dislocates",
        "resistance_band",
        "M",
        "shoulders spine",
    ),
    # pull-up bar
    _ex("pullup", "Klimmzüge", "Pull-ups", "pull_up_bar", "S", "back arms", difficulty=3),
    _ex("negative_pullup", "Negative Klimmzüge", "Negative pull-ups", "pull_up_bar", "S", "back arms", difficulty=2),
    _ex("hanging_knee_raise", "Hängendes Knieheben", "Hanging knee raises", "pull_up_bar", "S", "core", difficulty=2),
    _ex("dead_hang", "Passives Hängen", "Dead hang", "pull_up_bar", "M", "shoulders spine back", "timed"),
    # machines
    _ex("leg_press", "Beinpresse", "Leg press", "machine", "SW", "legs glutes"),
    _ex("lat_pulldown", "Latzug", "Lat pulldown", "machine", "SW", "back arms"),
    _ex("machine_chest_press", "Brustpresse an der Maschine", "Machine chest press", "machine", "SW", "chest arms"),
    _ex("cable_row", "Rudern am Kabelzug", "Seated cable rows", "machine", "SWE", "back arms"),
    _ex("leg_curl", "Beinbeuger an der Maschine", "Leg curls", "machine", "S", "legs"),
    _ex(
        "machine_shoulder_press",
        "Schulterpresse an der Maschine",
        "Machine shoulder press",
        "machine",
        "S",
        "shoulders arms",
    ),
    # cardio machines
    _ex("bike", "Fahrradergometer", "Stationary bike", "bike", "WE", "cardio legs", "cardio"),
    _ex("rower", "Rudergerät", "Rowing machine", "rower", "WE", "cardio back", "cardio"),
    _ex("treadmill", "Laufband", "Treadmill", "treadmill", "WE", "cardio legs", "cardio"),
)
