"""Show DMN predictions on visdom: for random samples, [image, ground truth, predicted probability] with the query.

``python -m dmn_pytorch.visdom_display --data PATH --dataset unc --split testA --backend dpn92 --num-filters 10
--lang-layers 3 --mix-we --num-images 30 --snapshot FILE --no-eval --visdom http://HOST:PORT --env NAME``
"""
from __future__ import annotations

import logging
import os
import sys
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from .data.referit_loader import ReferDataset
from .data.transforms import denormalise, image_to_tensor, resize_longer_side
from .models.checkpoint import load_dmn_weights, read_state_dict
from .models.dmn import resize_kwargs
from .train import build_model, get_args_parser
from .utils.visdom import VisdomPlots

logger = logging.getLogger("dmn_pytorch")


def main(argv: list[str] | None = None) -> int:
    parser = get_args_parser()
    parser.description = __doc__.splitlines()[0]
    # The original display script's own defaults.
    parser.set_defaults(split="testA", env="langvis-vis", num_filters=1, lang_layers=2, log_interval=5)
    parser.add_argument("--num-images", type=int, default=30, help="number of samples to display")
    parser.add_argument("--heatmap", action="store_true", help="accepted for compatibility (no effect, as originally)")
    parser.add_argument("--no-eval", action="store_true", help="keep BatchNorm in train mode (the README uses it)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.visdom:
        raise SystemExit("visdom_display: --visdom URL is required")
    target_transform = None if args.high_res else partial(resize_longer_side, size=args.size)
    dataset = ReferDataset(args.data, split_root=args.split_root, dataset=args.dataset, split=args.split,
                           transform=partial(image_to_tensor, size=args.size), annotation_transform=target_transform,
                           max_query_len=-1)
    model = build_model(args, len(dataset.corpus))
    if os.path.exists(args.snapshot):
        load_dmn_weights(model, read_state_dict(args.snapshot), args.snapshot)
    else:
        logger.warning("no snapshot at %s: showing an untrained model", args.snapshot)
    model.train() if args.no_eval else model.eval()
    plots = VisdomPlots(args.visdom, args.visdom_port, args.env)
    if not plots.enabled:
        return 1
    rng = np.random.default_rng(args.seed)
    for i, idx in enumerate(rng.choice(len(dataset), size=min(args.num_images, len(dataset)), replace=False)):
        img, mask, words = dataset[int(idx)]
        with torch.no_grad():
            prob = torch.sigmoid(model(img[None], words[None]))
        size = img.shape[-2:]
        prob = F.interpolate(prob, size=size, mode="bilinear", **resize_kwargs("bilinear"))[0]
        mask = F.interpolate(mask.float()[None, None], size=size, mode="bilinear", **resize_kwargs("bilinear"))[0]
        image = torch.from_numpy(denormalise(img)).permute(2, 0, 1).float() / 255
        panels = torch.stack([image, mask.expand(3, -1, -1), prob.expand(3, -1, -1)])
        query = " ".join(w for w in dataset.untokenize_word_vector(words) if w != "<unk>")
        plots.images(panels.numpy(), caption=f"{i}: Query: {query}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
