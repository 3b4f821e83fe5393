"""DATALOADER_DICT[datatype][subset](args, tokenizer, task_type) -> (DataLoader, number of samples, sampler)."""
from __future__ import annotations

import logging
from functools import partial

import torch
from torch.utils.data import DataLoader, DistributedSampler

from dataloaders.datasets import DATASETS
from modules.tokenization_clip import ClipTokenizer

logger = logging.getLogger(__name__)


def build_dataset(args, tokenizer: ClipTokenizer, subset: str, task_type: str):
    cls = DATASETS[(args.datatype, task_type)]
    return cls(subset, args.data_path, args.features_path, tokenizer, max_words=args.max_words,
               image_resolution=args.image_resolution, cache_images=args.cache_images, skip_corrupt=args.skip_corrupt)


def dataloader_train(args, tokenizer: ClipTokenizer, task_type: str, subset: str = "train"):
    dataset = build_dataset(args, tokenizer, subset, task_type)
    sampler = DistributedSampler(dataset, seed=args.seed) if args.world_size > 1 else None
    generator = torch.Generator().manual_seed(args.seed)
    loader = DataLoader(dataset, batch_size=args.batch_size // args.world_size, num_workers=args.num_thread_reader,
                        shuffle=sampler is None, sampler=sampler, drop_last=True, generator=generator,
                        pin_memory=torch.cuda.is_available())
    return loader, len(dataset), sampler


def dataloader_test(args, tokenizer: ClipTokenizer, task_type: str, subset: str = "test"):
    dataset = build_dataset(args, tokenizer, subset, task_type)
    loader = DataLoader(dataset, batch_size=args.batch_size_val, num_workers=args.num_thread_reader, shuffle=False,
                        drop_last=False)
    return loader, len(dataset)


def log_skipped(loaders: list[DataLoader]) -> None:
    """--skip_corrupt's count at the end of a run: pairs left out of each split for an unreadable image."""
    counts = {loader.dataset.subset: len(loader.dataset.skipped) for loader in loaders}
    logger.warning("--skip_corrupt: %d pair(s) with an unreadable image skipped (%s)", sum(counts.values()),
                   ", ".join(f"{subset} {n}" for subset, n in counts.items()))


DATALOADER_DICT = {
    datatype: {
        "train": dataloader_train,
        "val": partial(dataloader_test, subset="val"),
        "test": dataloader_test,
    }
    for datatype in ("clevr", "spot")
}
