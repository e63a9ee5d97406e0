"""Convolutional β-VAE whose depth follows the image size, and how it trains (`Recipe`).

Pixels are modelled as Bernoulli probabilities (inputs scaled to [0, 1]), so the reconstruction term is a
binary cross-entropy in nats and `recon + kl` is the negative ELBO at β=1: a β-independent score.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from gen_platform.config import DataParams, VAEParams
from gen_platform.evaluation.elbo import all_reduce, neg_elbo
from gen_platform.models.shapes import channel_widths

SELECTION_METRIC = "val_neg_elbo"  # lower is better; independent of β


@dataclass(frozen=True)
class VAEConfig:
    image_size: int
    channels: int
    latent_dim: int
    hidden_channels: int

    def to_dict(self) -> dict:
        return asdict(self)


Config = VAEConfig  # the name every family module exposes, used to rebuild a model from its saved config


def config_from_params(data: DataParams, model: VAEParams) -> VAEConfig:
    channel_widths(data.image_size, model.hidden_channels)
    return VAEConfig(data.image_size, data.channels, model.latent_dim, model.hidden_channels)


class ConvVAE(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        widths = channel_widths(config.image_size, config.hidden_channels)
        encoder, in_channels = [], config.channels
        for width in widths:
            encoder += [nn.Conv2d(in_channels, width, 4, stride=2, padding=1), nn.BatchNorm2d(width), nn.LeakyReLU(0.2)]
            in_channels = width
        self.encoder = nn.Sequential(*encoder, nn.Flatten())
        bottom = config.image_size >> len(widths)
        self.bottom_shape = (widths[-1], bottom, bottom)
        flat = widths[-1] * bottom * bottom
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
        return {"recon": recon, "kl": kl, "logits": logits, "mean": mean, "log_var": log_var, "z": z}

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


class Recipe:
    """One Adam optimizer on the β-weighted loss; `wrap` makes the model data-parallel (or not)."""

    TERMS = ("loss", "recon", "kl", "neg_elbo")
    PROGRESS = ("train_loss", "train_kl", "val_neg_elbo")  # shown to the user each epoch

    def __init__(self, model: ConvVAE, hyper: VAEParams, wrap: Callable[[nn.Module], nn.Module],
                 device: torch.device):
        self.model, self.beta, self.device = model, hyper.beta, device
        self.trainable = wrap(model)
        self.optimizer = torch.optim.Adam(self.trainable.parameters(), lr=hyper.learning_rate)

    def train_epoch(self, loader: DataLoader) -> dict[str, float]:
        """One pass over this worker's shard; means over all workers' images."""
        self.trainable.train()
        totals = torch.zeros(len(self.TERMS) + 1, dtype=torch.float64)
        for (batch,) in loader:
            batch = batch.to(self.device, non_blocking=True)
            terms = loss_terms(self.trainable(batch), self.beta)
            self.optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            self.optimizer.step()
            totals += torch.tensor([terms[t].item() * len(batch) for t in self.TERMS] + [len(batch)],
                                   dtype=torch.float64)
        totals = all_reduce(totals)
        return {name: (totals[i] / totals[-1]).item() for i, name in enumerate(self.TERMS)} | {"images": int(totals[-1])}

    def validate(self, images: torch.Tensor, batch_size: int, rank: int, world_size: int, seed: int,
                 features: nn.Module | None = None) -> dict[str, float]:
        return neg_elbo(self.model, images, batch_size, self.device, rank, world_size, seed)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
