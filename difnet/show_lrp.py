"""LRP step 3: plot the relevance of lrp_total.py's <exp>_result.pkl files.

* <out_path>/contribution.jpg (the original's figure): mean visual contribution (sum of the encoder-cell
  relevance) against target position 2..10, one curve per --exp_name;
* beyond the original, when the rendered/COCO images are found under --image_root: one PNG per caption,
  <out_path>/<exp>_<image_id>.png, the image and, per generated word, the 7x7 cell relevance over it, and
  <out_path>/<exp>_relevance.png, the same for the first --composite_images captions in one figure (one row per
  image, its generated and first reference caption above the row; at least 800 px wide).

    python show_lrp.py --exp_name DIFNet_lrp [other_exp ...]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import pickle

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from errors import DifnetError, run_entry_point  # noqa: E402

logger = logging.getLogger("difnet")
POSITIONS = 20  # captions are padded to 20 target positions before averaging
COMPOSITE_CHOICE = 5  # the composite's rows are picked among the first 5 x --composite_images captions
COMPOSITE_MIN_INCHES = 9.0  # 900 px at 100 dpi: the composite figure stays readable with short captions


def avg_lrp_by_pos(data: list[dict], seg: str = "inp") -> np.ndarray:
    """Mean over captions (those without NaN) of the relevance summed per target position, padded to 20."""
    res, count = np.zeros(POSITIONS), 0
    for item in data:
        lrp = item[f"{seg}_lrp"]
        if np.isnan(lrp).any():
            continue
        d = np.sum(lrp, axis=-1)[:POSITIONS]
        res += np.pad(d, (0, POSITIONS - d.shape[0]))
        count += 1
    return res / max(count, 1)


def show_source2target(all_data: list[list[dict]], labels: list[str], path: str) -> None:
    fig = plt.figure(figsize=(7, 6), dpi=100)
    for data, label in zip(all_data, labels):
        res = avg_lrp_by_pos(data, seg="inp")[1:]
        plt.plot(range(2, 9 + 2), res[:9], label=label)
    plt.xlabel("target token position", size=20)
    plt.ylabel("visual contribution", size=20)
    plt.yticks(size=20)
    plt.xticks([2, 5, 10, 11], size=17)
    plt.title("visual ⟶ target(k)", size=20)
    plt.grid()
    plt.legend(fontsize=13)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def show_caption_relevance(item: dict, image: np.ndarray, path: str) -> None:
    """The image, then one panel per generated word with its 7x7 cell relevance (red positive, blue negative)."""
    words = item["words"][: item["inp_lrp"].shape[0]]
    n = len(words) + 1
    fig, axes = plt.subplots(1, n, figsize=(1.8 * n, 2.2), dpi=100)
    axes[0].imshow(image)
    axes[0].set_title(str(item["image_id"]), fontsize=8)
    h, w = image.shape[:2]
    for ax, word, rel in zip(axes[1:], words, item["inp_lrp"]):
        heat = rel.reshape(7, 7)
        scale = np.abs(heat).max() or 1.0
        ax.imshow(image)
        ax.imshow(heat, cmap="bwr", vmin=-scale, vmax=scale, alpha=0.6, extent=(0, w, h, 0), interpolation="nearest")
        ax.set_title(word, fontsize=8)
    for ax in axes:
        ax.axis("off")
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def show_relevance_composite(items: list[dict], images: list[np.ndarray], captions: list[tuple[str, str]],
                             path: str) -> None:
    """One row per caption: the image, then for each position the word the model predicts there (given the
    generated prefix) with its 7x7 cell relevance over the image; captions holds (generated, reference) per row.
    A cell's opacity grows with its |relevance| so that the image stays visible where relevance is small."""
    columns = max(len(item["words"][: item["inp_lrp"].shape[0]]) for item in items) + 1
    fig = plt.figure(figsize=(max(1.6 * columns, COMPOSITE_MIN_INCHES), 2.3 * len(items) + 0.5), dpi=100,
                     layout="constrained")
    fig.suptitle("DIFNet LRP: which image cells each predicted word drew on (red: for the word, blue: against it; "
                 "scaled per word)", fontsize=13)
    for row, item, image, (generated, reference) in zip(fig.subfigures(len(items), 1, squeeze=False)[:, 0], items,
                                                        images, captions):
        words = item["words"][: item["inp_lrp"].shape[0]]
        row.suptitle(f"test image {item['image_id']}    generated: \"{generated}\"    reference: \"{reference}\"",
                     fontsize=12)
        axes = row.subplots(1, columns)
        axes[0].imshow(image)
        axes[0].set_title("image", fontsize=12)
        h, w = image.shape[:2]
        for ax, word, rel in zip(axes[1:], words, item["inp_lrp"]):
            heat = rel.reshape(7, 7)
            scale = np.abs(heat).max() or 1.0
            ax.imshow(image)
            ax.imshow(heat, cmap="bwr", vmin=-scale, vmax=scale, alpha=0.85 * np.abs(heat) / scale,
                      extent=(0, w, h, 0), interpolation="nearest")
            ax.set_title(word, fontsize=13, fontweight="bold")
        for ax in axes:
            ax.axis("off")
    fig.savefig(path)
    plt.close(fig)


def reproduces_caption(item: dict, generated: str) -> bool:
    """Whether the per-position top-1 words are the generated caption (beam search may have chosen otherwise)."""
    return [w for w in item["words"] if w != "<eos>"] == generated.split()


def caption_pairs(out_path: str, exp: str) -> dict[int, tuple[str, str]]:
    """image id -> (generated caption, first reference), from test.py's <exp>.json (empty when it is not there)."""
    try:
        with open(os.path.join(out_path, f"{exp}.json")) as f:
            captions = json.load(f)
    except FileNotFoundError:
        return {}
    return {int(k): (v["gen"][0], (v.get("gts") or ["(none)"])[0]) for k, v in captions.items()}


def main(args: argparse.Namespace) -> list[str]:
    os.makedirs(args.out_path, exist_ok=True)
    all_data = []
    for exp in args.exp_name:
        fname = os.path.join(args.out_path, f"{exp}_result.pkl")
        try:
            with open(fname, "rb") as f:
                all_data.append(pickle.load(f))
        except FileNotFoundError:
            raise DifnetError(f"{fname} not found: run lrp_total.py --exp_name {exp} first") from None
    written = [os.path.join(args.out_path, "contribution.jpg")]
    show_source2target(all_data, args.exp_name, written[0])
    for exp, data in zip(args.exp_name, all_data):
        shown: list[tuple[dict, np.ndarray]] = []
        for item in data[: max(args.max_images, COMPOSITE_CHOICE * args.composite_images)]:
            image_file = os.path.join(args.image_root, "val2014", item.get("file_name", ""))
            if "words" in item and os.path.isfile(image_file):
                shown.append((item, np.asarray(Image.open(image_file).convert("RGB"))))
        if shown and args.composite_images > 0:
            pairs = caption_pairs(args.out_path, exp)
            # rows whose panel words spell the generated caption first: they read without a footnote
            ranked = sorted(shown, key=lambda s: not reproduces_caption(s[0], pairs.get(s[0]["image_id"], ("",))[0]))
            chosen = ranked[: args.composite_images]
            written.append(os.path.join(args.out_path, f"{exp}_relevance.png"))
            show_relevance_composite([item for item, _ in chosen], [image for _, image in chosen],
                                     [pairs.get(item["image_id"], ("(not found)", "(not found)")) for item, _ in chosen],
                                     written[-1])
        for item, image in shown[: args.max_images]:
            written.append(os.path.join(args.out_path, f"{exp}_{item['image_id']}.png"))
            show_caption_relevance(item, image, written[-1])
    logger.info("wrote %s", ", ".join(written))
    return written


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="DIFNet")
    parser.add_argument("--exp_name", type=str, nargs="+", default=["DIFNet"],
                        help="select one or more lrp_results for showing")
    parser.add_argument("--out_path", type=str, default="./output/output_lrp")
    parser.add_argument("--image_root", type=str, default="coco/images", help="folder holding val2014/<file_name>")
    parser.add_argument("--max_images", type=int, default=10, help="per-caption figures per experiment")
    parser.add_argument("--composite_images", type=int, default=2,
                        help="captions in the composite <exp>_relevance.png (0: none)")
    run_entry_point(lambda: main(parser.parse_args()))
