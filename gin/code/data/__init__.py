"""Grounding CSV datasets (ReferIt / Flickr30k layouts of ZSGNet), word vectors, attention targets and loaders."""
from .loader import ImgQuDataset, collater, get_dataloader, get_datasets, read_splits  # noqa: F401
from .word_vectors import load_word_vectors  # noqa: F401
