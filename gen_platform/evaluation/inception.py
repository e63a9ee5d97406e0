"""Standard FID from a user-supplied Inception-v3 feature extractor (opt-in: `evaluate.inception_weights`).

The domain classifier's feature space is the platform's common scale; FID in Inception space is what papers
report for large natural images. Nothing is downloaded: the user places a TorchScript Inception-v3 (such as
NVIDIA's `inception-2015-12-05.pt`, the network of the original TensorFlow FID) in the repository. TorchScript
is loaded without unpickling Python objects, so the file cannot run arbitrary Python code.

Images reach the network as the clean-fid protocol resizes them (Parmar, Zhang and Zhu, "On Aliased Resizing and
Surprising Subtleties in GAN Evaluation", CVPR 2022), so that an FID here compares with numbers computed that way:
each channel, in [0, 255] as float32, resized to 299×299 by PIL's bicubic filter (which antialiases when it
shrinks), then clipped to [0, 255]. torch's bilinear `interpolate` does not antialias, and the aliasing it leaves
changes FID by more than many reported improvements. tests/unit/test_inception.py checks the resize against
clean-fid's own code on fixed images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from gen_platform.errors import ConfigError

FIELD = "evaluate.inception_weights"
INPUT_SIZE = 299


def clean_resize(images: torch.Tensor) -> torch.Tensor:
    """N×C×H×W in [0, 255] → N×C×299×299, resized as clean-fid does (see the module doc)."""
    pixels = images.detach().to("cpu", torch.float32).numpy()
    resized = np.empty((*pixels.shape[:2], INPUT_SIZE, INPUT_SIZE), dtype=np.float32)
    for index, image in enumerate(pixels):
        for channel, plane in enumerate(image):
            resized[index, channel] = np.asarray(
                Image.fromarray(plane, mode="F").resize((INPUT_SIZE, INPUT_SIZE), resample=Image.BICUBIC))
    return torch.from_numpy(resized.clip(0, 255)).to(images.device)


class InceptionFeatures(nn.Module):
    """Images N×C×H×W in [0, 1] (grey or RGB, any size) → the extractor's pool features (N×2048)."""

    def __init__(self, extractor: torch.jit.ScriptModule):
        super().__init__()
        self.extractor = extractor
        arguments = {argument.name for argument in extractor.forward.schema.arguments}
        # NVIDIA's detector returns logits unless asked for features.
        self.keywords = {"return_features": True} if "return_features" in arguments else {}
        self.num_features = self(torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE)).shape[1]  # torchmetrics reads it

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        features = self.extractor(clean_resize((images.float() * 255).clamp(0, 255)), **self.keywords)
        if features.dim() != 2 or features.shape[0] != len(images):
            raise ConfigError(f"{FIELD}: the extractor returned shape {tuple(features.shape)}; expected "
                                f"({len(images)}, features), e.g. ({len(images)}, 2048) for Inception-v3 pool features")
        return features


def load_inception(path: Path) -> InceptionFeatures:
    if not path.is_file():
        raise ConfigError(f"{FIELD}: {path} does not exist. Place a TorchScript Inception-v3 there (for example "
                            "NVIDIA's inception-2015-12-05.pt, as used by StyleGAN's metrics); nothing is downloaded.")
    try:
        extractor = torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(f"{FIELD}: {path} is not a TorchScript module ({first_line}); save one with "
                            "torch.jit.save(torch.jit.script(model), path)") from None
    return InceptionFeatures(extractor.eval())
