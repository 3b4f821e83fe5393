"""Seeded scene sampler and renderer shared by every toy dataset writer.

A scene is a few coloured shapes on a textured background. Everything is deterministic given a
``numpy.random.Generator``, so a writer seeded with S always produces the same files.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (214, 39, 40),
    "green": (44, 160, 44),
    "blue": (31, 89, 220),
    "yellow": (235, 205, 30),
    "purple": (148, 80, 189),
    "white": (245, 245, 245),
}
SIZES: dict[str, float] = {"small": 0.08, "large": 0.15}  # radius as a fraction of the shorter image side
# Scene types: a background texture that only a segmentation-like input needs to reveal (see toydata.coco_grid).
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "grass": (96, 140, 70),
    "water": (70, 110, 150),
    "sand": (190, 170, 120),
    "snow": (200, 205, 215),
}
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
CHANGE_KINDS: tuple[str, ...] = ("add", "remove", "move", "recolour")


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    cx: float  # centre, pixels
    cy: float
    radius: float  # pixels

    @property
    def box(self) -> tuple[float, float, float, float]:
        """Axis-aligned box (x1, y1, x2, y2) in continuous pixel coordinates."""
        return (self.cx - self.radius, self.cy - self.radius, self.cx + self.radius, self.cy + self.radius)

    def phrase(self, with_size: bool = True) -> str:
        return f"{self.size} {self.colour} {self.shape}" if with_size else f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class Scene:
    width: int
    height: int
    background: str
    objects: tuple[SceneObject, ...] = field(default_factory=tuple)
    texture_seed: int = 0


def relation(a: SceneObject, b: SceneObject) -> str:
    """Spatial relation of ``a`` to ``b`` along the dominant axis ("left of", "right of", "above", "below")."""
    dx, dy = a.cx - b.cx, a.cy - b.cy
    if abs(dx) >= abs(dy):
        return "left of" if dx < 0 else "right of"
    return "above" if dy < 0 else "below"


def _fits(candidate: SceneObject, others: list[SceneObject], width: int, height: int, gap: float) -> bool:
    x1, y1, x2, y2 = candidate.box
    if x1 < 1 or y1 < 1 or x2 > width - 1 or y2 > height - 1:
        return False
    return all(np.hypot(candidate.cx - o.cx, candidate.cy - o.cy) > candidate.radius + o.radius + gap for o in others)


def sample_object(
    rng: np.random.Generator,
    width: int,
    height: int,
    others: list[SceneObject] | tuple[SceneObject, ...] = (),
    *,
    shape: str | None = None,
    colour: str | None = None,
    size: str | None = None,
    max_tries: int = 200,
) -> SceneObject | None:
    """A random object that does not overlap ``others`` (None when no free place was found)."""
    others = list(others)
    shape = shape or SHAPES[rng.integers(len(SHAPES))]
    colour = colour or list(COLOURS)[rng.integers(len(COLOURS))]
    size = size or list(SIZES)[rng.integers(len(SIZES))]
    radius = SIZES[size] * min(width, height)
    gap = 0.03 * min(width, height)
    for _ in range(max_tries):
        cx = float(rng.uniform(radius + 1, width - radius - 1))
        cy = float(rng.uniform(radius + 1, height - radius - 1))
        obj = SceneObject(shape, colour, size, cx, cy, radius)
        if _fits(obj, others, width, height, gap):
            return obj
    return None


def sample_scene(
    rng: np.random.Generator,
    width: int = 128,
    height: int = 128,
    n_objects: tuple[int, int] = (2, 4),
    *,
    distinct: bool = True,
    background: str | None = None,
    size: str | None = None,
) -> Scene:
    """A scene with ``n_objects[0]..n_objects[1]`` non-overlapping objects, all of ``size`` if given.

    With ``distinct`` no two objects share both shape and colour, so "the red circle" names one object.
    """
    count = int(rng.integers(n_objects[0], n_objects[1] + 1))
    background = background or list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]
    objects: list[SceneObject] = []
    while len(objects) < count:
        obj = sample_object(rng, width, height, objects, size=size)
        if obj is None:
            break
        if distinct and any(o.shape == obj.shape and o.colour == obj.colour for o in objects):
            continue
        objects.append(obj)
    return Scene(width, height, background, tuple(objects), int(rng.integers(2**31)))


def apply_change(scene: Scene, rng: np.random.Generator, kind: str) -> tuple[Scene, dict]:
    """The "after" scene for one change of ``kind`` in CHANGE_KINDS, and a description of what changed.

    The description holds ``kind``, ``object`` (the changed object, as it is after the change, or before for
    "remove") and, for "recolour", ``old_colour``.
    """
    objects = list(scene.objects)
    if kind == "add":
        for _ in range(50):
            new = sample_object(rng, scene.width, scene.height, objects)
            if new is not None and not any(o.shape == new.shape and o.colour == new.colour for o in objects):
                return dataclasses.replace(scene, objects=(*objects, new)), {"kind": kind, "object": new}
        raise ValueError("no room to add an object to this scene")
    if not objects:
        raise ValueError(f"cannot apply {kind!r} to an empty scene")
    index = int(rng.integers(len(objects)))
    target = objects[index]
    if kind == "remove":
        del objects[index]
        return dataclasses.replace(scene, objects=tuple(objects)), {"kind": kind, "object": target}
    if kind == "move":
        rest = objects[:index] + objects[index + 1 :]
        for _ in range(50):
            moved = sample_object(rng, scene.width, scene.height, rest, shape=target.shape, colour=target.colour, size=target.size)
            if moved is not None and np.hypot(moved.cx - target.cx, moved.cy - target.cy) > 2 * target.radius:
                objects[index] = moved
                return dataclasses.replace(scene, objects=tuple(objects)), {"kind": kind, "object": moved}
        raise ValueError("no free place to move the object to")
    if kind == "recolour":
        taken = {o.colour for o in objects if o.shape == target.shape}
        choices = [c for c in COLOURS if c not in taken]
        new_colour = choices[int(rng.integers(len(choices)))]
        objects[index] = dataclasses.replace(target, colour=new_colour)
        return dataclasses.replace(scene, objects=tuple(objects)), {
            "kind": kind,
            "object": objects[index],
            "old_colour": target.colour,
        }
    raise ValueError(f"unknown change kind {kind!r}; expected one of {CHANGE_KINDS}")


def _polygon(obj: SceneObject) -> list[tuple[float, float]]:
    r, cx, cy = obj.radius, obj.cx, obj.cy
    if obj.shape == "square":
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if obj.shape == "triangle":
        return [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if obj.shape == "diamond":
        return [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
    raise ValueError(f"no polygon for shape {obj.shape!r}")


def _draw(draw: ImageDraw.ImageDraw, obj: SceneObject, fill) -> None:
    if obj.shape == "circle":
        draw.ellipse(obj.box, fill=fill)
    else:
        draw.polygon(_polygon(obj), fill=fill)


def render_background(scene: Scene) -> np.ndarray:
    """The textured background alone, (H, W, 3) uint8; its texture is fixed by ``scene.texture_seed``."""
    rng = np.random.default_rng(scene.texture_seed)
    base = np.array(BACKGROUNDS[scene.background], dtype=np.float32)
    noise = rng.normal(0.0, 12.0, size=(scene.height // 8 + 1, scene.width // 8 + 1, 1)).astype(np.float32)
    noise = np.kron(noise, np.ones((8, 8, 1), dtype=np.float32))[: scene.height, : scene.width]
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def render(scene: Scene) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render a scene.

    Returns ``image`` (H, W, 3) uint8 RGB, ``masks`` (N, H, W) bool (one instance mask per object, later objects
    occlude earlier ones) and ``boxes`` (N, 4) float32 x1, y1, x2, y2 clipped to the image.
    """
    image = Image.fromarray(render_background(scene))
    draw = ImageDraw.Draw(image)
    masks = np.zeros((len(scene.objects), scene.height, scene.width), dtype=bool)
    for i, obj in enumerate(scene.objects):
        _draw(draw, obj, COLOURS[obj.colour])
        mask_img = Image.new("L", (scene.width, scene.height), 0)
        _draw(ImageDraw.Draw(mask_img), obj, 255)
        mask = np.asarray(mask_img) > 0
        masks[:i] &= ~mask
        masks[i] = mask
    boxes = np.array([obj.box for obj in scene.objects], dtype=np.float32).reshape(-1, 4)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, scene.width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, scene.height)
    return np.asarray(image), masks, boxes
