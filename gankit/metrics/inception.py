"""Inception-v3 features for FID/KID/IS, for users who have the weights (they cannot be
downloaded here). The network is torch-fidelity's TensorFlow-compatible InceptionV3 (the one the
FID reference code uses, `pt_inception-2015-12-05`); grayscale images are repeated to 3 channels
and resized to 299x299 inside it, the protocol of Lucic et al. 2018 for Fashion-MNIST.

torch-fidelity itself unpickles the weights file (`torch.load(weights_only=False)`); gankit first
loads the user's file with `weights_only=True` (tensors only, no code) and hands torch-fidelity
a re-saved copy of those tensors.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data import to_uint8
from ..errors import GankitError


def load_inception(weights_path: str | Path, device="cpu"):
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3  # (the [inception] extra)
    except ImportError:
        raise GankitError("Inception metrics need torch-fidelity: pip install 'gankit[inception]'") from None
    path = Path(weights_path)
    if not path.is_file():
        raise GankitError(f"{path}: no such Inception weights file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise GankitError(f"{path}: refused to load as plain tensors ({type(e).__name__}); expected the "
                          f"state dict of torch-fidelity's InceptionV3 (pt_inception-2015-12-05)") from None
    with tempfile.TemporaryDirectory() as tmp:
        safe = os.path.join(tmp, "inception.pt")
        torch.save(state, safe)
        try:
            model = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                                feature_extractor_weights_path=safe)
        except RuntimeError as e:
            raise GankitError(f"{path}: not InceptionV3 weights ({str(e).splitlines()[0][:200]})") from None
    return model.to(device).eval()


@torch.no_grad()
def embed_inception(model, x: torch.Tensor, batch: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """(pool3 features (N, 2048), softmax over the 1008 unbiased logits) of images in [-1, 1]."""
    device = next(model.parameters()).device
    feats, probs = [], []
    for chunk in x.split(batch):
        u8 = to_uint8(chunk)
        if u8.shape[1] == 1:
            u8 = u8.repeat(1, 3, 1, 1)  # grayscale -> RGB, as the FID protocol for (Fashion-)MNIST
        f, logits = model(u8.to(device))
        feats.append(f.float().cpu())
        probs.append(F.softmax(logits.float(), 1).cpu())
    return torch.cat(feats), torch.cat(probs)
