"""The β-VAE family: settings, architecture, network, likelihood scores and training recipe in one place.

Pixels are modelled as Bernoulli probabilities (inputs scaled to [0, 1]), so the reconstruction term is a
binary cross-entropy in nats and `recon + kl` is the negative ELBO at β=1: a β-independent score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from gen_platform.evaluation.bootstrap import Comparison, paired_mean_difference
from gen_platform.evaluation.images import image_grid, interpolation_grid
from gen_platform.models.family import Family, FamilyScores, Recipe as FamilyRecipe, Update
from gen_platform.nets import adam, bottom_size, channel_widths, down_stack, up_stack
from gen_platform.settings import DataParams, EvaluateParams, Section
from gen_platform.progress import progress


class VAEParams(Section):
    """`model.vae` in params.yaml."""

    latent_dim: int = Field(16, ge=1, le=1024)
    hidden_channels: int = Field(32, ge=4, le=512)
    beta: float = Field(1.0, gt=0, le=1000, description="KL weight of the beta-VAE")
    learning_rate: float = Field(2e-3, gt=0, le=1)


@dataclass(frozen=True)
class VAEArchitecture:
    image_size: int
    channels: int
    latent_dim: int
    hidden_channels: int


def architecture_from(data: DataParams, settings: VAEParams) -> VAEArchitecture:
    channel_widths(data.image_size, settings.hidden_channels)
    return VAEArchitecture(data.image_size, data.channels, settings.latent_dim, settings.hidden_channels)


class ConvVAE(nn.Module):
    def __init__(self, architecture: VAEArchitecture):
        super().__init__()
        self.architecture = architecture
        widths = channel_widths(architecture.image_size, architecture.hidden_channels)
        bottom = bottom_size(architecture.image_size)
        self.bottom_shape = (widths[-1], bottom, bottom)
        flat = widths[-1] * bottom * bottom
        self.encoder = nn.Sequential(down_stack(architecture.channels, widths, lambda: nn.LeakyReLU(0.2)), nn.Flatten())
        self.to_stats = nn.Linear(flat, 2 * architecture.latent_dim)
        self.from_latent = nn.Linear(architecture.latent_dim, flat)
        self.decoder = up_stack(widths[::-1], architecture.channels, lambda: nn.LeakyReLU(0.2))

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
        z = torch.randn(n, self.architecture.latent_dim, generator=generator, device="cpu").to(device)
        return torch.sigmoid(self.decode(z))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decode(self.encode(x)[0]))


def loss_terms(outputs: dict[str, torch.Tensor], beta: float) -> dict[str, torch.Tensor]:
    """Batch means: the β-weighted training loss and the β-independent negative ELBO."""
    recon, kl = outputs["recon"].mean(), outputs["kl"].mean()
    return {"loss": recon + beta * kl, "recon": recon, "kl": kl, "neg_elbo": recon + kl}


def elbo_sums(model: nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Summed reconstruction and KL terms of a batch and their sum (the negative ELBO at β=1), on its device."""
    outputs = model(images)
    recon, kl = outputs["recon"].sum(), outputs["kl"].sum()
    return {"recon": recon, "kl": kl, "neg_elbo": recon + kl}


@torch.no_grad()
def neg_elbo(model: ConvVAE, images: torch.Tensor, batch_size: int, seed: int = 0) -> float:
    """The mean negative ELBO over `images` in one process (evaluation). The latent noise is seeded, so the same
    model on the same images always gets the same score."""
    model.eval()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        total = sum(elbo_sums(model, images[start:start + batch_size])["neg_elbo"].item()
                    for start in range(0, len(images), batch_size))
    return total / max(len(images), 1)


@torch.no_grad()
def importance_weighted_log_likelihoods(model: ConvVAE, images: torch.Tensor, samples: int, batch_size: int = 64,
                                        seed: int = 0) -> torch.Tensor:
    """log p(x) per image in nats, estimated with `samples` draws from the encoder (Burda et al. 2016).

    log p(x) ≈ logsumexp_k[log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log k; a tighter bound than the ELBO.
    """
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    normal = torch.distributions.Normal(0.0, 1.0)
    per_image = []
    for start in progress(range(0, len(images), batch_size), -(-len(images) // batch_size),
                          f"importance-weighted NLL ({samples} samples per image)"):
        x = images[start:start + batch_size]
        mean, log_var = model.encode(x)
        std = (0.5 * log_var).exp()
        eps = torch.randn((samples, *mean.shape), generator=generator)
        z = mean + std * eps                                               # k × B × D
        logits = model.decode(z.flatten(0, 1)).view(samples, *x.shape)
        log_px_z = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").flatten(2).sum(2)
        log_weights = log_px_z + normal.log_prob(z).sum(2) - torch.distributions.Normal(mean, std).log_prob(z).sum(2)
        per_image.append(torch.logsumexp(log_weights, dim=0) - torch.log(torch.tensor(float(samples))))
    return torch.cat(per_image) if per_image else torch.zeros(0)


def importance_weighted_nll(model: ConvVAE, images: torch.Tensor, samples: int, batch_size: int = 64,
                            seed: int = 0) -> float:
    """-log p(x) in nats per image (mean of `importance_weighted_log_likelihoods`)."""
    log_px = importance_weighted_log_likelihoods(model, images, samples, batch_size, seed)
    return -log_px.mean().item() if len(log_px) else 0.0


class Recipe(FamilyRecipe):
    """One Adam optimizer on the β-weighted loss."""

    train_metrics = ("loss", "recon", "kl", "neg_elbo")
    validation_metrics = ("recon", "kl", "neg_elbo")
    progress = ("train_loss", "train_kl", "val_neg_elbo")

    def __init__(self, model: ConvVAE, settings: VAEParams, device: torch.device):
        self.model, self.settings = model, settings

    def configure(self, prepared: dict[str, nn.Module], update: Update) -> None:
        self.parallel_model, self.update = prepared["model"], update
        self.optimizers = {"optimizer": adam(self.parallel_model.parameters(), lr=self.settings.learning_rate)}

    def train_step(self, batch: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        terms = loss_terms(self.parallel_model(batch), self.settings.beta)
        self.update(terms["loss"], self.optimizers["optimizer"])
        return {name: value.detach() for name, value in terms.items()}

    def validation_step(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return elbo_sums(self.model, batch)


def score(model: ConvVAE, val: torch.Tensor, test: torch.Tensor, settings: EvaluateParams) -> FamilyScores:
    """The ELBO at β=1 (val and test), the importance-weighted `nll`, reconstructions and interpolations."""
    scores = {f"{split}_neg_elbo": neg_elbo(model, images, settings.batch_size, seed=settings.seed)
              for split, images in (("val", val), ("test", test))}
    nll_images = test[:settings.metric_samples]
    scores["nll"] = importance_weighted_nll(model, nll_images, settings.nll_importance_samples, seed=settings.seed)
    scores["nll_images"] = len(nll_images)
    originals = test[:32]
    pictures = {"reconstructions": image_grid(torch.cat([originals, model.reconstruct(originals)]), columns=8),
                "interpolations": interpolation_grid(model, test[:16])}
    return FamilyScores(scores, pictures)


def compare_by_nll(challenger: ConvVAE, champion: ConvVAE, images: torch.Tensor, features: nn.Module,
                   settings: EvaluateParams) -> Comparison:
    """Paired bootstrap over the per-image importance-weighted NLL of both models on the same images, with the
    same encoder noise (the seed)."""
    images = images[:settings.metric_samples]
    per_image = [-importance_weighted_log_likelihoods(model, images, settings.nll_importance_samples,
                                                      seed=settings.seed).numpy() for model in (champion, challenger)]
    return paired_mean_difference("val_nll", *per_image, settings.confidence, settings.bootstrap_resamples, settings.seed)


def search_space() -> dict[str, Any]:
    from ray import tune

    return {"beta": tune.loguniform(0.1, 10.0), "learning_rate": tune.loguniform(3e-4, 3e-3),
            "latent_dim": tune.choice([8, 16, 32])}


FAMILY = Family(name="vae", settings=VAEParams, architecture=VAEArchitecture, architecture_from=architecture_from,
                build=ConvVAE, recipe=Recipe, selection_metric="val_neg_elbo", search_space=search_space,
                grace_epochs=1, score=score, compare=compare_by_nll)
