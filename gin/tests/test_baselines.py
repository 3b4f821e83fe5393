"""The demo's trivial baselines: random object and largest object, exact expectations."""
import pytest

from baselines import largest_object_accuracy, random_object_accuracy, toy_objects
from errors import DataError

SCENE = [[0, 0, 10, 10], [20, 0, 30, 10], [0, 20, 20, 40], [30, 30, 50, 50]]  # areas 100, 100, 400, 400
# Box 1 has IoU 0.9 with [0, 0, 10, 10]; boxes 0 and 2 tie for the largest (area 100).
NEAR_TWINS = [[0, 0, 10, 10], [0, 0, 10, 9], [50, 50, 60, 60]]


def test_random_object_is_the_fraction_of_matching_objects_averaged_over_queries():
    gt = [[0, 0, 10, 10], [0, 20, 20, 40], [0, 0, 10, 10]]
    objects = [SCENE, SCENE, NEAR_TWINS]
    assert random_object_accuracy(gt, objects) == pytest.approx((1 / 4 + 1 / 4 + 2 / 3) / 3, abs=1e-12)


def test_largest_object_breaks_ties_uniformly():
    gt = [[0, 0, 10, 10], [0, 20, 20, 40], [0, 0, 10, 10]]
    objects = [SCENE, SCENE, NEAR_TWINS]
    # query 0: the two largest miss; query 1: one of the two largest is the target; query 2: box 0 or box 2.
    assert largest_object_accuracy(gt, objects) == pytest.approx((0 + 1 / 2 + 1 / 2) / 3, abs=1e-12)
    assert largest_object_accuracy([[0, 0, 10, 10]], [NEAR_TWINS], threshold=0.95) == pytest.approx(1 / 2, abs=1e-12)


def test_objects_of_one_size_tie_for_the_largest_despite_rounding():
    # As the toy writer builds boxes (centre -/+ radius): x2 - x1 is 19.199999999999996 and 19.200000000000003 here.
    twins = [[cx - 9.6, 20 - 9.6, cx + 9.6, 20 + 9.6] for cx in (12.3, 36.54)]
    assert largest_object_accuracy([twins[0]], [twins]) == pytest.approx(1 / 2, abs=1e-12)


def test_toy_objects_replay_the_generator_and_check_it_against_the_csv(small_toy):
    gt, objects = toy_objects(small_toy, "test", seed=3)
    assert len(gt) == 4 * 8 and all(len(boxes) == 4 for boxes in objects)  # 8 test images, 2 objects x 2 phrasings
    # Each query's box is exactly one of its image's four objects, so a random pick is right 1 time in 4.
    assert random_object_accuracy(gt, objects) == 0.25
    with pytest.raises(DataError, match="seed 4.*--toy_seed"):
        toy_objects(small_toy, "test", seed=4)


def test_a_missing_toy_set_names_the_file_and_the_fix(tmp_path):
    with pytest.raises(DataError, match="train_flat.csv not found.*make gin-toy"):
        toy_objects(tmp_path, "test", seed=0)
