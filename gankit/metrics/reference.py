"""Reference features, cached under a hash of what produced them (dataset, split, feature network,
n, and a folder's contents), and the feature network that makes them: the dataset's evaluator, or
Inception-v3 with weights the user gives."""
from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import torch
from filelock import FileLock

from ..data import load_split, locate, to_float
from ..data.folder import cache_key, find_images, images_sha256, load_folder
from ..errors import GankitError
from ..files import atomic_path, cache_root, sha256_file
from .evaluator import SHORT_NAMES, embed, load_evaluator
from .inception import embed_inception, load_inception


def _folder_split(data_root: str | None, split: str, n: int, shape: tuple[int, int]) -> tuple[torch.Tensor, str]:
    """A folder has no test split: 'test' is n images of a fixed shuffle of it, 'train' the next
    n, so the real-data floor compares two disjoint halves. Returns (images, folder key)."""
    channels, size = shape
    x = torch.from_numpy(load_folder(data_root, size, channels, say=lambda m: None, progress=False))
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    part = order[:n] if split == "test" else order[n:2 * n]
    if len(part) < n:
        raise GankitError(f"{data_root}: {len(x)} readable images, too few for {n} {split} images "
                          f"({'n' if split == 'test' else '2n'} needed); lower --n")
    root = Path(data_root).expanduser()
    return x[part], cache_key(root, find_images(root), size, channels)


def reference_features(dataset: str, split: str, n: int, embed_fn, card: dict,
                       data_root: str | None = None, shape: tuple[int, int] = (3, 64)) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and probabilities of the first n images of a split, cached under a hash of
    (dataset, split, evaluator sha256, n). For dataset 'folder' (the images under data_root,
    decoded at shape = (channels, size)) the key also holds the folder's contents; for a card that
    says how the network ran (`embedding`), that too."""
    x, folder_key = None, ""
    if dataset == "folder":
        x, folder_key = _folder_split(data_root, split, n, shape)
    embedding = f"|{card['embedding']}" if card.get("embedding") else ""  # (how the network ran: evaluator.FOLDED)

    def entry(count: int) -> Path:
        key = hashlib.sha256(f"{dataset}|{split}|{card['sha256']}|{count}|{folder_key}{embedding}".encode()).hexdigest()
        return cache_root("reference") / f"{dataset}-{split}-{count}-{key[:16]}.pt"
    path = entry(n)
    path.parent.mkdir(parents=True, exist_ok=True)
    # One process computes a missing entry while the others that need it wait and then read it (the
    # workers of a tuning study or a grid, which would otherwise all embed the same 60,000 images).
    with FileLock(str(path) + ".lock"):
        # A split's first n images are a prefix of its first n' > n, and evaluator.embed makes each
        # batch's features alone (250 images on a CPU, 1,000 on a GPU): an entry for n' holds these
        # n rows, made in the same batches when n is a multiple of 1,000, and an entry for n' < n
        # (a multiple of 1,000) the first n' of them: the same bits either way (`gankit eval` embeds
        # the whole training split for memorisation before the real-data floor asks for its first
        # 10,000; a run's evaluations of 5,000 leave `gankit eval` 5,000 test images to embed). Not
        # for a folder, whose 'train' half is no prefix, nor for Inception features (other batches).
        cached = {n: path} if path.exists() else {}
        if not cached and dataset != "folder" and card.get("embedding"):
            cached = _cached_counts(path, entry)
        above = [c for c in cached if c >= n and (c == n or n % 1000 == 0)]
        if above:
            saved = torch.load(cached[min(above)], weights_only=True)
            feats, probs = saved["features"][:n].clone(), saved["probs"][:n].clone()
            return check_alive(feats, card, data_root or dataset), probs
        if x is None:
            x, _ = load_split(dataset, split, data_root)
        if len(x) < n:
            raise GankitError(f"{dataset} {split} has {len(x)} images, fewer than n={n}")
        below = max((c for c in cached if c < n and c % 1000 == 0), default=0)
        feats, probs = embed_fn(to_float(x[below:n]))
        if below:
            saved = torch.load(cached[below], weights_only=True)
            feats, probs = torch.cat([saved["features"], feats]), torch.cat([saved["probs"], probs])
        check_alive(feats, card, data_root or dataset)
        with atomic_path(path) as tmp:
            torch.save({"features": feats, "probs": probs}, tmp)
    return feats, probs


def _cached_counts(path: Path, entry) -> dict[int, Path]:
    """{count: file} of the cached entries of the same split and network as `path`: the files beside
    it named <dataset>-<split>-<count>-<key> whose key is entry(count)'s."""
    prefix = path.name.rsplit("-", 2)[0]
    counts = {int(c) for c in (p.name.rsplit("-", 2)[1] for p in path.parent.glob(f"{prefix}-*.pt")) if c.isdigit()}
    return {c: p for c in sorted(counts) if (p := entry(c)).exists()}


def check_alive(feats: torch.Tensor, card: dict, images: str) -> torch.Tensor:
    """The features of real images, refused when they are the same for every image (a network
    whose units all died, e.g. an evaluator trained a step or two): every score from them would
    be 0 or meaningless, not a measurement."""
    if len(feats) > 1 and float((feats - feats[0]).abs().amax()) <= 1e-6 * float(feats.abs().amax()):
        raise GankitError(f"{card.get('path', 'the feature network')}: its features are the same for every image of "
                          f"{images}, so it cannot tell any two apart (an evaluator trained too little?); "
                          f"train it longer (`gankit evaluator train --epochs`)")
    return feats


def training_features(dataset: str, embed_fn, card: dict, data_root: str | None = None,
                      indices: torch.Tensor | None = None) -> torch.Tensor:
    """Features of a dataset's whole training split (cached like the reference's), or of the images
    at `indices` alone (a run's --subset; a few thousand images, not cached): what memorisation
    compares samples with."""
    x, _ = load_split(dataset, "train", data_root)
    if indices is not None:
        return embed_fn(to_float(x[indices]))[0]
    return reference_features(dataset, "train", len(x), embed_fn, card, data_root)[0]


def folder_training_features(data_root: str, indices: torch.Tensor, embed_fn, shape: tuple[int, int],
                             fingerprint: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(features of the images of a folder a run trained on (its --subset's `indices`), features of
    the images --subset left out): the training set and the held-out images of memorisation. The
    images at `indices` must be the ones the run fingerprinted (`fingerprint`, from its
    subset.json; runs older than the fingerprint are not checked)."""
    x = torch.from_numpy(load_folder(data_root, shape[1], shape[0], say=lambda m: None, progress=False))
    changed = f"{data_root}: the folder changed since the run trained on it"
    if len(indices) and int(indices.max()) >= len(x):
        raise GankitError(f"{changed} ({len(x)} images, but the run's subset.json names image {int(indices.max())}); "
                          f"memorisation needs the images it trained on")
    if fingerprint and images_sha256(x[indices]) != fingerprint:
        raise GankitError(f"{changed} (the images at the places its subset.json names are not the ones it "
                          f"fingerprinted: images added, removed, renamed or edited); memorisation needs the "
                          f"images it trained on")
    held = torch.ones(len(x), dtype=torch.bool)
    held[indices] = False
    return embed_fn(to_float(x[indices]))[0], embed_fn(to_float(x[held]))[0]


def feature_network(reference: str, inception_weights: str | None, device, evaluator: str | None = None):
    """(embed function, a card with a sha256 naming the network, the metric-name prefix). An
    evaluator that is not the one gankit ships names its metrics apart (`fmnist-1a2b3c-`, as in
    fid_fmnist-1a2b3c-10k), so its numbers never mix with the shipped protocol's. A folder's
    evaluator (`evaluator`: its name or path) names them after the folder it learnt."""
    if inception_weights:
        model = load_inception(inception_weights, device)
        return (lambda x: embed_inception(model, x)), {"sha256": sha256_file(Path(inception_weights))}, "inception"
    if reference == "folder" and not evaluator:
        raise GankitError("an image folder has no evaluator of its own: score it with an evaluator trained on its "
                          "classes (evaluator=NAME, `gankit evaluator train --dataset folder`) or Inception features "
                          "(--inception-weights PATH, torch-fidelity's pt_inception-2015-12-05 weights)")
    model, card = load_evaluator(reference, device, evaluator)
    net = card["dataset"] if reference == "folder" else SHORT_NAMES.get(reference, reference)
    return (lambda x: embed(model, x)), card, net if card["shipped"] else f"{net}-{card['sha256'][:6]}-"


def reference_size(dataset: str, data_root: str | None = None) -> int:
    """How many real images a dataset offers as the reference: the test split's count from the IDX
    header (nothing else read), or a folder's image count."""
    if dataset == "folder":
        return len(find_images(Path(data_root).expanduser())) if data_root else 0
    images, _ = locate(dataset, "test", data_root)
    raw = images.read_bytes()[:16] if images.suffix != ".gz" else gzip.open(images).read(16)
    return int.from_bytes(raw[4:8], "big") if len(raw) >= 8 else 0
