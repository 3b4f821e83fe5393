"""Embedded toy datasets: a seeded scene sampler and renderer, and one writer per original on-disk format.

Each writer is a module runnable as ``python -m toydata.<name> --out DIR [--seed S --size N]``.
"""
