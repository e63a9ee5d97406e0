"""Convolutional β-VAE whose depth follows the image size.

Pixels are modelled as Bernoulli probabilities (inputs scaled to [0, 1]), so the reconstruction term is a
binary cross-entropy in nats and `recon + kl` is the negative ELBO at β=1: a β-independent score.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from gen_platform.config import DataParams, ModelParams
from gen_platform.errors import ConfigError


@dataclass(frozen=True)
class VAEConfig:
    image_size: int
    channels: int
    latent_dim: int
    hidden_channels: int

    def to_dict(self) -> dict:
        return asdict(self)


Config = VAEConfig  # the name every family module exposes, used to rebuild a model from its saved config


def downsampling_steps(image_size: int) -> int:
    """Halve the image while it stays even and above 4 pixels: 8→4, 28→14→7, 32→…→4, 64→…→4."""
    steps, size = 0, image_size
    while size % 2 == 0 and size > 4:
        size //= 2
        steps += 1
    if steps == 0:
        raise ConfigError(f"data.image_size: {image_size} cannot be downsampled; use an even size ≥ 8 (e.g. 8, 28, 32, 64)")
    return steps


def config_from_params(data: DataParams, model: ModelParams) -> VAEConfig:
    downsampling_steps(data.image_size)
    return VAEConfig(data.image_size, data.channels, model.latent_dim, model.hidden_channels)


class ConvVAE(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        steps = downsampling_steps(config.image_size)
        widths = [config.hidden_channels * 2**i for i in range(steps)]
        encoder, in_channels = [], config.channels
        for width in widths:
            encoder += [nn.Conv2d(in_channels, width, 4, stride=2, padding=1), nn.BatchNorm2d(width), nn.LeakyReLU(0.2)]
            in_channels = width
        self.encoder = nn.Sequential(*encoder, nn.Flatten())
        self.bottom_shape = (widths[-1], config.image_size >> steps, config.image_size >> steps)
        flat = widths[-1] * self.bottom_shape[1] * self.bottom_shape[2]
        self.to_stats = nn.Linear(flat, 2 * config.latent_dim)
        self.from_latent = nn.Linear(config.latent_dim, flat)
        decoder = []
        for width, next_width in zip(widths[::-1], widths[::-1][1:] + [config.channels]):
            decoder.append(nn.ConvTranspose2d(width, next_width, 4, stride=2, padding=1))
            if next_width != config.channels:
                decoder += [nn.BatchNorm2d(next_width), nn.LeakyReLU(0.2)]
        self.decoder = nn.Sequential(*decoder)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_var = self.to_stats(self.encoder(x)).chunk(2, dim=1)
        return mean, log_var.clamp(-20, 10)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Pixel logits."""
        return self.decoder(self.from_latent(z).view(-1, *self.bottom_shape))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-image reconstruction and KL terms (nats); the loss is formed outside so DDP sees one forward."""
        mean, log_var = self.encode(x)
        z = mean + torch.randn_like(mean) * (0.5 * log_var).exp()
        logits = self.decode(z)
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        kl = 0.5 * (mean.pow(2) + log_var.exp() - 1 - log_var).sum(1)
        return {"recon": recon, "kl": kl, "logits": logits}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images in [0, 1], N×C×H×W."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.config.latent_dim, generator=generator).to(device)
        return torch.sigmoid(self.decode(z))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decode(self.encode(x)[0]))


def build(config: VAEConfig) -> ConvVAE:
    return ConvVAE(config)


def loss_terms(outputs: dict[str, torch.Tensor], beta: float) -> dict[str, torch.Tensor]:
    """Batch means: the β-weighted training loss and the β-independent negative ELBO."""
    recon, kl = outputs["recon"].mean(), outputs["kl"].mean()
    return {"loss": recon + beta * kl, "recon": recon, "kl": kl, "neg_elbo": recon + kl}
