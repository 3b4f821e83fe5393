"""--save_vis: one figure per evaluated pair: before | after images, the generated caption and the references."""
from __future__ import annotations

import os
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from dataloaders.rawimage_util import CLIP_MEAN, CLIP_STD  # noqa: E402


def to_display(image: torch.Tensor) -> torch.Tensor:
    """[1, 3, H, W] normalised tensor -> [H, W, 3] in 0..1."""
    mean, std = torch.tensor(CLIP_MEAN)[:, None, None], torch.tensor(CLIP_STD)[:, None, None]
    return (image[0] * std + mean).clamp(0, 1).permute(1, 2, 0)


def save_pair_figures(dataset, results: list[dict], gts: dict[str, list[str]], out_dir: str, limit: int) -> list[str]:
    """Write ``<out_dir>/<pair id>.png`` for the first ``limit`` pairs; returns the paths."""
    os.makedirs(out_dir, exist_ok=True)
    captions = {r["image_id"]: r["caption"] for r in results}
    paths = []
    for index in range(min(limit, len(dataset.pairs))):
        name = dataset.pair_name(index)
        bef, aft = dataset.pair_images(index)
        fig, axes = plt.subplots(1, 2, figsize=(6, 3.6))
        for ax, image, title in zip(axes, (bef, aft), ("before", "after")):
            ax.imshow(to_display(image))
            ax.set_title(title)
            ax.axis("off")
        lines = textwrap.wrap(f"generated: {captions.get(name, '')}", 80)
        lines += textwrap.wrap(f"reference: {'; '.join(gts.get(name, [])[:3])}", 80)
        fig.text(0.02, 0.02, "\n".join(lines), fontsize=8, va="bottom")
        fig.subplots_adjust(bottom=0.3)
        path = os.path.join(out_dir, f"{os.path.splitext(name)[0].replace('/', '_')}.png")
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths.append(path)
    return paths
