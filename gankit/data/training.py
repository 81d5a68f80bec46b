"""What a Config trains on: its images (`training_images`, checked without decoding by
`check_training_data`), its labels, a --subset of them, and, prepared once as one object (`TrainingData`): the training images (all,
or --subset of them), their classes for a conditional run, the indices of the subset, and the
overfitting probe (a fixed slice of the training images beside as many held-out real images).
The training engine reads its batches from it (gankit.training.loop.batch) and its probe
(gankit.training.maintenance.heldout_gap); gankit.training.setup only decides which process
decodes a folder first."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import DataError
from .folder import class_folders, folder_files, folder_labels, images_sha256, load_folder
from .idx import load_split, locate, read_idx_pair

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


PROBE_SIZE = 256  # images of each side of the overfitting probe


@dataclass
class TrainingData:
    x: torch.Tensor  # the training images, uint8 (N, C, S, S), on the device (or pinned on the host)
    y: torch.Tensor | None  # their classes (int64, beside them), for a conditional run
    subset: torch.Tensor | None  # which of the dataset's images they are (--subset); None: all
    probe: tuple | None  # ((training x, y), (held-out x, y)), PROBE_SIZE each on the device; None: nothing held out

    def __len__(self) -> int:
        return len(self.x)

    @classmethod
    def prepare(cls, cfg, images: torch.Tensor, device: torch.device, say=print) -> "TrainingData":
        """The run's data from the whole dataset's `images` (gankit.data.training_images): its labels,
        its --subset (stratified by class where there are classes), the probe, all checked and put
        where the loop reads them: on the device with --data-on-device, else pinned for a GPU."""
        y = training_labels(cfg) if cfg.num_classes else None
        subset, x_all, y_all, x = None, images, y, images
        if cfg.subset:  # (labels stratify it even when the run is not conditional)
            labels = y if y is not None else training_labels(cfg) if cfg.dataset != "folder" else None
            subset = subset_indices(len(images), cfg.subset, labels)
            say(f"training on {cfg.subset} of the {len(images)} images ("
                + ("stratified by class" if labels is not None else "a seeded choice")
                + ("); the other images are held out (a folder has no test split: `gankit eval` compares "
                   "with images of the whole folder)" if cfg.dataset == "folder"
                   else "); evaluations still compare with the full test split"))
            x, y = images[subset], (y[subset] if y is not None else None)
        if y is not None and (len(y) != len(x) or int(y.max()) >= cfg.num_classes):
            raise DataError(f"{cfg.data_root or cfg.dataset}: {len(x)} images with labels up to {int(y.max())}, "
                            f"but the run has {cfg.num_classes} classes (did the class folders change since it started?)")
        if cfg.data_on_device and device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if x.nbytes > 0.5 * free:
                raise DataError(f"the training images need {x.nbytes / 2**30:.1f} GiB, more than half of the "
                                f"{free / 2**30:.1f} GiB free on {device}; use --no-data-on-device or a smaller --image-size")
        probe = heldout_probe(cfg, x, y, x_all, y_all, subset, device)
        if cfg.data_on_device:
            x, y = x.to(device), (y.to(device) if y is not None else None)
        elif device.type == "cuda":
            x, y = x.pin_memory(), (y.pin_memory() if y is not None else None)
        return cls(x, y, subset, probe)

    def subset_record(self, cfg) -> dict | None:
        """subset.json of a run on --subset: which images it saw (and, for a folder, which can change
        under the run, a fingerprint of them); None for a run on all of them."""
        if self.subset is None:
            return None
        record = {"subset": cfg.subset, "seed": 0, "indices": self.subset.tolist()}
        if cfg.dataset == "folder":
            record["images_sha256"] = images_sha256(self.x.cpu())
        return record


def heldout_probe(cfg, x_train, y_train, x_all, y_all, subset, device: torch.device):
    """((training images, labels), (held-out real images, labels)) of PROBE_SIZE each, a seeded
    choice, uint8 on the device (labels None for an unconditional run): the held-out images are the
    test split of an IDX dataset, or the images of a folder that --subset left out. None for a whole
    folder (no image is held out of training)."""
    pick = torch.Generator().manual_seed(0)
    if cfg.dataset != "folder":
        x_out, y_out = load_split(cfg.dataset, "test", cfg.data_root)
        x_out = resize_uint8(x_out, cfg.image_size)
    elif subset is not None and len(x_all) - len(subset) >= cfg.batch_size:
        rest = torch.ones(len(x_all), dtype=torch.bool)
        rest[subset] = False
        x_out, y_out = x_all[rest], (y_all[rest] if y_all is not None else None)
    else:
        return None
    sides = []
    for x, y in ((x_train, y_train), (x_out, y_out)):
        i = torch.randperm(len(x), generator=pick)[:PROBE_SIZE]
        sides.append((x[i].to(device), y[i].to(device) if (y is not None and cfg.num_classes) else None))
    return tuple(sides)
