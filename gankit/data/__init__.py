"""Training data: IDX datasets (idx.py), folders of images (folder.py), batches by index
(sampler.py), what a Config trains on (training.py: its images as one uint8 tensor, its labels,
its subset and held-out probe as one TrainingData), and class names. Inside gankit images are NCHW
float in [-1, 1] (to_float); uint8 only at the edges."""
from __future__ import annotations

import torch

from .folder import class_folders, folder_labels, images_sha256, load_folder
from .idx import DATASETS, load_split, locate, read_idx, read_idx_pair
from .sampler import EpochSampler
from .training import (TrainingData, check_training_data, resize_uint8, subset_indices, training_images,
                       training_labels)

__all__ = ["TrainingData", "check_training_data", "folder_labels", "images_sha256", "load_folder", "subset_indices", "CLASS_NAMES", "DATASETS", "DATASET_CHOICES", "EpochSampler", "class_names", "load_split", "locate",
           "read_idx", "read_idx_pair", "resize_uint8", "to_float", "to_uint8", "training_images", "training_labels"]

DATASET_CHOICES = (*DATASETS, "folder")  # "folder": any folder of images (gankit.data.folder)

# Class names of the datasets gankit knows; a folder's classes are its sub-folders' names.
CLASS_NAMES = {
    "fashion-mnist": ["T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                      "ankle boot"],
    "mnist": [str(i) for i in range(10)],
}


def class_names(dataset: str, num_classes: int, data_root: str | None = None) -> list[str]:
    """The names of a conditional run's classes, in label order."""
    if dataset == "folder":
        return [p.name for p in class_folders(data_root)]
    return CLASS_NAMES.get(dataset, [str(i) for i in range(num_classes)])


def to_float(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1], on whatever device the batch lives."""
    return x_uint8.float().div_(127.5).sub_(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255], rounding to nearest (the inverse of to_float)."""
    return x.detach().float().add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)
