"""The service processes' garbage-collector settings (engine/worker/heap.py)."""

import gc

import pytest

from engine.worker import heap


@pytest.fixture
def restored_gc():
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_tune_makes_young_collections_rarer(restored_gc):
    heap.tune()
    assert gc.get_threshold() == heap.THRESHOLDS
    assert heap.THRESHOLDS[0] > 700  # CPython's default


def test_start_up_objects_leave_the_collected_generations(restored_gc):
    survivor = [[i] for i in range(1000)]  # lists are tracked by the collector
    heap.freeze_startup_objects()
    assert gc.get_freeze_count() >= len(survivor)
    # A full collection no longer walks them: the tracked objects are the ones made since.
    assert len(gc.get_objects()) < gc.get_freeze_count()
