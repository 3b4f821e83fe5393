import numpy as np
import pytest

from toydata.scene import CHANGE_KINDS, COLOURS, SceneObject, apply_change, relation, render, sample_scene


def test_same_seed_same_scene_and_pixels():
    a = sample_scene(np.random.default_rng(7))
    b = sample_scene(np.random.default_rng(7))
    assert a == b
    img_a, masks_a, boxes_a = render(a)
    img_b, masks_b, boxes_b = render(b)
    assert np.array_equal(img_a, img_b) and np.array_equal(masks_a, masks_b) and np.array_equal(boxes_a, boxes_b)
    assert a != sample_scene(np.random.default_rng(8))


def test_render_shapes_and_masks_inside_boxes():
    scene = sample_scene(np.random.default_rng(0), width=96, height=64, n_objects=(3, 3))
    image, masks, boxes = render(scene)
    assert image.shape == (64, 96, 3) and image.dtype == np.uint8
    assert masks.shape == (3, 64, 96) and boxes.shape == (3, 4) and boxes.dtype == np.float32
    for mask, (x1, y1, x2, y2), obj in zip(masks, boxes, scene.objects):
        ys, xs = np.nonzero(mask)
        assert len(xs) > 20
        assert xs.min() >= np.floor(x1) and xs.max() <= np.ceil(x2) and ys.min() >= np.floor(y1) and ys.max() <= np.ceil(y2)
        # the object's colour is what the renderer put inside its mask
        assert np.abs(image[mask].mean(0) - np.array(COLOURS[obj.colour])).max() < 1


def test_objects_do_not_overlap_and_are_distinct():
    for seed in range(20):
        scene = sample_scene(np.random.default_rng(seed), n_objects=(4, 4))
        keys = [(o.shape, o.colour) for o in scene.objects]
        assert len(set(keys)) == len(keys)
        _, masks, _ = render(scene)
        assert masks.sum(0).max() <= 1


def test_relation_dominant_axis():
    a = SceneObject("circle", "red", "small", 10, 50, 5)
    b = SceneObject("square", "blue", "small", 90, 55, 5)
    c = SceneObject("square", "blue", "small", 12, 95, 5)
    assert relation(a, b) == "left of" and relation(b, a) == "right of"
    assert relation(a, c) == "above" and relation(c, a) == "below"


@pytest.mark.parametrize("kind", CHANGE_KINDS)
def test_apply_change(kind):
    rng = np.random.default_rng(3)
    before = sample_scene(rng, n_objects=(2, 3))
    after, change = apply_change(before, rng, kind)
    assert change["kind"] == kind
    if kind == "add":
        assert len(after.objects) == len(before.objects) + 1 and change["object"] in after.objects
    elif kind == "remove":
        assert len(after.objects) == len(before.objects) - 1 and change["object"] not in after.objects
    elif kind == "move":
        assert len(after.objects) == len(before.objects) and change["object"] not in before.objects
    else:
        assert change["object"].colour != change["old_colour"]
    assert not np.array_equal(render(before)[0], render(after)[0])
