"""Visual inputs: grid features (one hdf5 file) and segmentation class maps (one .npy per image).

Each reader opens its file once per process (DataLoader workers included) and keeps it open, instead of
reopening the hdf5 file for every sample as the original does (users hit "Too many open files", issue #8).
"""
from __future__ import annotations

import os

import h5py
import numpy as np

from errors import DATA_FIX, DifnetError

GRID_CELLS = 49
SEG_SHAPE = (133, 7, 7)


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


class GridFeatures:
    """``<image_id>_features`` (N, 2048) arrays, padded with zeros or cut to 49 rows, as float32."""

    def __init__(self, path: str, max_detections: int = GRID_CELLS, d_in: int = 2048) -> None:
        if not os.path.isfile(path):
            raise DifnetError(f"grid features {path} not found (--features_path): {DATA_FIX}")
        self.path, self.max_detections, self.d_in = path, max_detections, d_in
        self._file: h5py.File | None = None
        self._pid = -1

    def _handle(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            try:
                self._file = h5py.File(self.path, "r")
            except OSError as e:
                raise DifnetError(f"grid features {self.path} cannot be read as hdf5 ({_first_line(e)}): the file "
                                  f"is truncated or corrupt; download it again: {DATA_FIX}") from None
            self._pid = os.getpid()
        return self._file

    def keys(self) -> set[str]:
        return set(self._handle().keys())

    def __getitem__(self, image_id: int) -> np.ndarray:
        key = f"{image_id}_features"
        handle = self._handle()
        try:
            data = handle[key][()]
        except KeyError:
            # the original substitutes random features with a warning; a missing key is a broken download
            raise DifnetError(f"{self.path} has no key '{key}': the features file does not match the "
                              f"annotations; {DATA_FIX}") from None
        except OSError as e:
            raise DifnetError(f"{self.path}['{key}'] cannot be read ({_first_line(e)}): the file is truncated or "
                              f"corrupt; download it again: {DATA_FIX}") from None
        if data.ndim != 2 or data.shape[1] != self.d_in:
            raise DifnetError(f"{self.path}['{key}'] has shape {data.shape}, expected (N, {self.d_in}) grid "
                              f"features; {DATA_FIX}")
        delta = self.max_detections - data.shape[0]
        if delta > 0:
            data = np.concatenate([data, np.zeros((delta, data.shape[1]), dtype=data.dtype)], axis=0)
        return data[: self.max_detections].astype(np.float32)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_file": None, "_pid": -1}


class SegmentationFeatures:
    """``<pixel_path>/<train2014|val2014>/<image_id>.npy``: (133, 7, 7) per-cell class area fractions."""

    def __init__(self, pixel_path: str) -> None:
        if not os.path.isdir(pixel_path):
            raise DifnetError(f"segmentation folder {pixel_path} not found (--pixel_path): {DATA_FIX}")
        self.pixel_path = pixel_path

    def path(self, image_id: int, folder: str) -> str:
        return os.path.join(self.pixel_path, folder, f"{image_id}.npy")

    def __call__(self, image_id: int, folder: str) -> np.ndarray:
        path = self.path(image_id, folder)
        try:
            data = np.load(path)
        except FileNotFoundError:
            raise DifnetError(f"segmentation file {path} not found (--pixel_path): {DATA_FIX}") from None
        except (OSError, ValueError, EOFError) as e:  # truncated, garbage, or a pickle instead of an array
            raise DifnetError(f"segmentation file {path} is not a readable .npy array ({_first_line(e)}); "
                              f"{DATA_FIX}, or pass --skip_corrupt to skip it") from None
        if data.shape != SEG_SHAPE:
            raise DifnetError(f"{path} has shape {data.shape}, expected {SEG_SHAPE}; {DATA_FIX}")
        return data.astype(np.float32)  # the original never casts (other dtypes then fail in the model)
