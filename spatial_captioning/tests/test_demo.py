"""demo.py's baseline, relation check and example figure on the session's small toy set (no training)."""
import json

from PIL import Image

import demo
from constant_caption import constant_caption_cider
from eval_utils import load_references


def test_relation_accuracy_reads_the_relation_words():
    references = {1: ["There is a red circle left of a blue square."], 2: ["The red circle is above the blue square."]}
    preds = [{"image_id": 1, "caption": "a red circle is left of a blue square"},
             {"image_id": 2, "caption": "a red circle is below a blue square"}]
    assert demo.relation_of("A red circle is right of a blue square.") == "right of"
    assert demo.relation_of("a red circle near a blue square") is None
    assert demo.relation_accuracy(preds, references) == 0.5


def test_baseline_and_examples_figure(toy_dir, tmp_path):
    references = load_references(str(toy_dir / "annotations" / "captions_val2014.json"))
    images = json.loads((toy_dir / "cocotalk.json").read_text())["images"]
    test = [img for img in images if img["split"] == "test"]
    train_captions = {c for img in images if img["split"] in ("train", "restval") for c in references[img["id"]]}
    caption, score = demo.constant_caption_baseline(toy_dir, [img["id"] for img in test])
    assert caption in train_captions
    assert score == constant_caption_cider(caption, {img["id"]: references[img["id"]] for img in test})
    assert 0 < score < 3  # a constant caption names the wrong objects for most images

    preds = [{"image_id": img["id"], "caption": references[img["id"]][0], "file_path": img["file_path"]} for img in test]
    assert demo.relation_accuracy(preds, references) == 1.0
    scores = {"after": 1.0, "zeroed": 0.5, "before": 0.1, "baseline": score, "relation": 1.0, "relation_zeroed": 0.25}
    path = tmp_path / "examples.png"
    demo.plot_examples(toy_dir, preds, preds, scores, caption, path)
    assert Image.open(path).width >= 800
