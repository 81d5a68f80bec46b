"""Training data: IDX datasets (idx.py), folders of images (folder.py), batches by index
(sampler.py), and what a Config asks for: its images as one uint8 tensor, its labels, its class
names. Inside gankit images are NCHW float in [-1, 1] (to_float); uint8 only at the edges."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import DataError
from .folder import class_folders, folder_files, folder_labels, images_sha256, load_folder
from .idx import DATASETS, load_split, locate, read_idx, read_idx_pair
from .sampler import EpochSampler

__all__ = ["check_training_data", "subset_indices", "CLASS_NAMES", "DATASETS", "DATASET_CHOICES", "EpochSampler", "class_names", "load_split", "locate",
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


def resize_uint8(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) uint8 -> (N, C, size, size) uint8, bilinear with antialiasing (Fashion-MNIST at
    32 or 64 for comparison with the higher-resolution models)."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    out = [torch.nn.functional.interpolate(c.float(), size=(size, size), mode="bilinear", antialias=True,
                                           align_corners=False).round_().clamp_(0, 255).to(torch.uint8)
           for c in x.split(4096)]
    return torch.cat(out)


def training_images(cfg, say=print, progress: bool = True) -> torch.Tensor:
    """The training images a resolved Config asks for, as (N, C, S, S) uint8 on the CPU."""
    if cfg.dataset == "folder":
        x = load_folder(cfg.data_root, cfg.image_size, cfg.channels, cfg.bad_files,
                        cache_dir=Path(cfg.out_dir) / ".cache", progress=progress, say=say)
        return torch.from_numpy(x)
    x, _ = load_split(cfg.dataset, "train", cfg.data_root)
    return resize_uint8(x, cfg.image_size)


def check_training_data(cfg) -> int:
    """What training_images would refuse, found without decoding a folder: the files are there and
    whole (an IDX split is read and checked; a folder is listed, its classes checked for a
    conditional run), --subset fits in them and leaves at least one batch. Returns the number of
    training images (for a folder, of image files: an unreadable one is only found by decoding).
    For a dataset that is on no disk here, nothing is checked (-1): a real start downloads it."""
    if cfg.dataset == "folder":
        n = len(folder_files(cfg.data_root, cfg.image_size, cfg.channels))
        if cfg.num_classes:
            class_folders(cfg.data_root)
    else:
        try:
            images, labels = locate(cfg.dataset, "train", cfg.data_root, download=False)
        except DataError:
            if cfg.data_root or os.environ.get("GANKIT_DATA"):
                raise
            return -1
        n = len(read_idx_pair(images, labels)[0])
    if cfg.subset and cfg.subset > n:
        raise DataError(f"--subset {cfg.subset}: the dataset has {n} images")
    used = cfg.subset or n
    if used < cfg.batch_size:
        raise DataError(f"the dataset has {used} images, fewer than one batch of {cfg.batch_size}; lower --batch-size")
    return n


def training_labels(cfg) -> torch.Tensor:
    """The class of each training image (int64 (N,), in training_images' order) for a conditional
    run: the IDX labels, or for a folder each image's sub-folder. Call it after training_images."""
    if cfg.dataset == "folder":
        return torch.from_numpy(folder_labels(cfg.data_root, cfg.image_size, cfg.channels,
                                              cache_dir=Path(cfg.out_dir) / ".cache"))
    _, y = load_split(cfg.dataset, "train", cfg.data_root)
    return y


def subset_indices(n: int, k: int, labels: torch.Tensor | None = None, seed: int = 0) -> torch.Tensor:
    """k of n images, sorted: with labels, every class in proportion to its share (largest
    remainders first), else a seeded choice. The same for every run seed, so runs on "1,000 images"
    see the same 1,000."""
    if k > n:
        raise DataError(f"--subset {k}: the dataset has {n} images")
    g = torch.Generator().manual_seed(seed)
    if labels is None:
        return torch.randperm(n, generator=g)[:k].sort().values
    labels = labels.cpu()
    classes, counts = labels.unique(return_counts=True)
    exact = counts.double() * k / n
    quota = exact.floor().long()
    for i in torch.argsort(exact - quota, descending=True)[:k - int(quota.sum())]:
        quota[i] += 1
    picks = [torch.nonzero(labels == c).flatten()[torch.randperm(int(m), generator=g)[:int(q)]]
             for c, m, q in zip(classes, counts, quota)]
    return torch.cat(picks).sort().values


def to_float(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1], on whatever device the batch lives."""
    return x_uint8.float().div_(127.5).sub_(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255], rounding to nearest (the inverse of to_float)."""
    return x.detach().float().add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)
