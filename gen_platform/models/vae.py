"""The β-VAE family: settings, architecture, network, likelihood scores and training recipe in one place.

Pixels are modelled as Bernoulli probabilities (inputs scaled to [0, 1]), so the reconstruction term is a
binary cross-entropy in nats and `recon + kl` is the negative ELBO at β=1: a β-independent score.

Training uses the standard normal prior. Once trained, the model samples from a latent prior fitted to its own
codes (`prior_components` > 0): a full-covariance Gaussian mixture fitted to the aggregate posterior, the codes
q(z|x) gives the training images (ex-post density estimation, Ghosh et al. 2020). A β below 1 keeps more latent
dimensions in use, which makes the decoder sharper and the codes unlike N(0, I); sampling N(0, I) then lands between
the training codes and gives blurred strokes, the fitted mixture lands where the codes are. `nll` and the champion
rule score the model with the prior it samples from.
"""

from __future__ import annotations

import math
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
    beta: float = Field(0.3, gt=0, le=1000, description="KL weight of the beta-VAE")
    learning_rate: float = Field(2e-3, gt=0, le=1)
    prior_components: int = Field(10, ge=0, le=100, description="components of the Gaussian mixture fitted to the "
                                  "latent codes of the training images once training ends, the prior the model "
                                  "samples from; 0 keeps the standard normal prior")


@dataclass(frozen=True)
class VAEArchitecture:
    image_size: int
    channels: int
    latent_dim: int
    hidden_channels: int
    prior_components: int = 0  # 0 in models saved before the fitted prior: the standard normal


def architecture_from(data: DataParams, settings: VAEParams) -> VAEArchitecture:
    channel_widths(data.image_size, settings.hidden_channels)
    return VAEArchitecture(data.image_size, data.channels, settings.latent_dim, settings.hidden_channels,
                           settings.prior_components)


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
        components, dim = architecture.prior_components, architecture.latent_dim
        if components:  # a Gaussian mixture: until `fit_latent_prior` sets it, every component is N(0, I)
            self.register_buffer("prior_log_weights", torch.full((components,), -math.log(components)))
            self.register_buffer("prior_means", torch.zeros(components, dim))
            self.register_buffer("prior_scale_tril", torch.eye(dim).repeat(components, 1, 1))

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

    def prior_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) under the latent prior, over the last dimension of `z` (… × latent_dim → …)."""
        if not self.architecture.prior_components:
            return torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        components = torch.distributions.MultivariateNormal(self.prior_means, scale_tril=self.prior_scale_tril)
        return torch.logsumexp(components.log_prob(z.unsqueeze(-2)) + self.prior_log_weights, dim=-1)

    @torch.no_grad()
    def sample_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws from the latent prior, on the CPU (one generator gives the same draws on any device)."""
        noise_shape = (n, self.architecture.latent_dim)
        if not self.architecture.prior_components:
            return torch.randn(noise_shape, generator=generator)
        component = torch.multinomial(self.prior_log_weights.exp().cpu(), n, replacement=True, generator=generator)
        noise = torch.randn(noise_shape, generator=generator)
        return self.prior_means.cpu()[component] + (self.prior_scale_tril.cpu()[component] @ noise[..., None])[..., 0]

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images in [0, 1], N×C×H×W, decoded from latents drawn from the prior."""
        return torch.sigmoid(self.decode(self.sample_latents(n, generator).to(next(self.parameters()).device)))

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

    log p(x) ≈ logsumexp_k[log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log k; a tighter bound than the ELBO. p(z) is
    the model's prior: the fitted mixture where `fit_latent_prior` ran.
    """
    model.eval()
    generator = torch.Generator().manual_seed(seed)
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
        log_weights = log_px_z + model.prior_log_prob(z) - torch.distributions.Normal(mean, std).log_prob(z).sum(2)
        per_image.append(torch.logsumexp(log_weights, dim=0) - torch.log(torch.tensor(float(samples))))
    return torch.cat(per_image) if per_image else torch.zeros(0)


def importance_weighted_nll(model: ConvVAE, images: torch.Tensor, samples: int, batch_size: int = 64,
                            seed: int = 0) -> float:
    """-log p(x) in nats per image (mean of `importance_weighted_log_likelihoods`)."""
    log_px = importance_weighted_log_likelihoods(model, images, samples, batch_size, seed)
    return -log_px.mean().item() if len(log_px) else 0.0


CODES_PER_IMAGE = 5  # draws from q(z|x) per training image: the aggregate posterior, not only its means


@torch.no_grad()
def fit_latent_prior(model: ConvVAE, images: torch.Tensor, seed: int, batch_size: int = 256) -> dict[str, float]:
    """Fit the prior the model samples from: a Gaussian mixture of its `prior_components` full-covariance components
    over `CODES_PER_IMAGE` codes q(z|x) of each training image in `images` (floats in [0, 1]). Fitted on codes
    drawn from q rather than on its means so that the prior also covers the dimensions the decoder ignores
    (where q stays near N(0, I)): the importance-weighted NLL under it stays a fair score. Returns the fit's
    mean log-likelihood per code, for the log."""
    from sklearn.mixture import GaussianMixture

    if model.architecture.prior_components == 0:
        return {}
    model.eval()
    device = model.prior_means.device
    generator = torch.Generator().manual_seed(seed)
    codes = []
    for start in range(0, len(images), batch_size):
        mean, log_var = model.encode(images[start:start + batch_size].to(device))
        noise = torch.randn((CODES_PER_IMAGE, *mean.shape), generator=generator).to(mean.device)
        codes.append((mean + (0.5 * log_var).exp() * noise).flatten(0, 1).double().cpu())
    codes = torch.cat(codes).numpy()
    mixture = GaussianMixture(model.architecture.prior_components, covariance_type="full", random_state=seed)
    mixture.fit(codes)
    model.prior_log_weights.copy_(torch.as_tensor(mixture.weights_).log().float().to(device))
    model.prior_means.copy_(torch.as_tensor(mixture.means_).float().to(device))
    model.prior_scale_tril.copy_(torch.linalg.cholesky(torch.as_tensor(mixture.covariances_)).float().to(device))
    return {"prior_fit_log_likelihood": float(mixture.score(codes)), "prior_fit_codes": len(codes)}


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
                grace_epochs=1, score=score, compare=compare_by_nll, after_training=fit_latent_prior)
