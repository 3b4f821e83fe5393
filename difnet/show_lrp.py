"""LRP step 3: plot the relevance of lrp_total.py's <exp>_result.pkl files.

* <out_path>/contribution.jpg (the original's figure): mean visual contribution (sum of the encoder-cell
  relevance) against target position 2..10, one curve per --exp_name;
* beyond the original, when the rendered/COCO images are found under --image_root: one PNG per caption,
  <out_path>/<exp>_<image_id>.png, the image and, per generated word, the 7x7 cell relevance over it.

    python show_lrp.py --exp_name DIFNet_lrp [other_exp ...]
"""
from __future__ import annotations

import argparse
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
        for item in data[: args.max_images]:
            image_file = os.path.join(args.image_root, "val2014", item.get("file_name", ""))
            if "words" not in item or not os.path.isfile(image_file):
                continue
            written.append(os.path.join(args.out_path, f"{exp}_{item['image_id']}.png"))
            show_caption_relevance(item, np.asarray(Image.open(image_file).convert("RGB")), written[-1])
    logger.info("wrote %s", ", ".join(written))
    return written


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="DIFNet")
    parser.add_argument("--exp_name", type=str, nargs="+", default=["DIFNet"],
                        help="select one or more lrp_results for showing")
    parser.add_argument("--out_path", type=str, default="./output/output_lrp")
    parser.add_argument("--image_root", type=str, default="coco/images", help="folder holding val2014/<file_name>")
    parser.add_argument("--max_images", type=int, default=10, help="per-caption figures per experiment")
    run_entry_point(lambda: main(parser.parse_args()))
