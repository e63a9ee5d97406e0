"""DCGAN-class generator and discriminator whose depth follows the image size, and how they train.

`d_steps_per_g_step` discriminator updates (each on a fresh real batch) precede every generator update.
Losses: non-saturating, hinge, WGAN-GP. Optional spectral norm on the discriminator, separate learning rates,
and an EMA of the generator that, when enabled, is the model that samples.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from gen_platform.config import DataParams, GANParams
from gen_platform.evaluation.elbo import all_reduce
from gen_platform.models.shapes import channel_widths

SELECTION_METRIC = "val_fd"  # Fréchet distance in the domain feature space; lower is better


@dataclass(frozen=True)
class GANConfig:
    image_size: int
    channels: int
    latent_dim: int
    hidden_channels: int
    spectral_norm: bool = False
    ema: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


Config = GANConfig


def config_from_params(data: DataParams, model: GANParams) -> GANConfig:
    channel_widths(data.image_size, model.hidden_channels)
    return GANConfig(data.image_size, data.channels, model.latent_dim, model.hidden_channels,
                     model.spectral_norm, model.ema_decay > 0)


class Generator(nn.Module):
    def __init__(self, config: GANConfig):
        super().__init__()
        widths = channel_widths(config.image_size, config.hidden_channels)[::-1]
        bottom = config.image_size >> len(widths)
        self.bottom_shape = (widths[0], bottom, bottom)
        self.project = nn.Sequential(nn.Linear(config.latent_dim, widths[0] * bottom * bottom))
        layers: list[nn.Module] = [nn.BatchNorm2d(widths[0]), nn.ReLU()]
        for width, next_width in zip(widths, widths[1:] + [config.channels]):
            layers.append(nn.ConvTranspose2d(width, next_width, 4, stride=2, padding=1))
            layers += [nn.BatchNorm2d(next_width), nn.ReLU()] if next_width != config.channels else [nn.Tanh()]
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1]."""
        return self.body(self.project(z).view(-1, *self.bottom_shape))


class Discriminator(nn.Module):
    def __init__(self, config: GANConfig):
        super().__init__()
        norm = spectral_norm if config.spectral_norm else (lambda layer: layer)
        layers: list[nn.Module] = []
        in_channels = config.channels
        widths = channel_widths(config.image_size, config.hidden_channels)
        for width in widths:
            layers += [norm(nn.Conv2d(in_channels, width, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
            in_channels = width
        bottom = config.image_size >> len(widths)
        self.body = nn.Sequential(*layers, nn.Flatten(), norm(nn.Linear(widths[-1] * bottom * bottom, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One logit (critic value) per image in [-1, 1]."""
        return self.body(x).squeeze(1)


class GAN(nn.Module):
    def __init__(self, config: GANConfig):
        super().__init__()
        self.config = config
        self.generator = Generator(config)
        self.discriminator = Discriminator(config)
        # Saved with the model so a checkpoint restores the average exactly.
        self.ema = AveragedModel(self.generator, use_buffers=True) if config.ema else None

    @property
    def sampler(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.generator

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               noise: torch.Tensor | None = None) -> torch.Tensor:
        """n images in [0, 1], N×C×H×W (from fixed `noise` when given)."""
        device = next(self.parameters()).device
        z = noise if noise is not None else torch.randn(n, self.config.latent_dim, generator=generator)
        was_training = self.sampler.training
        self.sampler.eval()
        images = (self.sampler(z.to(device)) + 1) / 2
        self.sampler.train(was_training)
        return images


def build(config: GANConfig) -> GAN:
    return GAN(config)


def discriminator_loss(kind: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    if kind == "non_saturating":
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return fake.mean() - real.mean()  # wgan_gp, penalty added by the caller


def generator_loss(kind: str, fake: torch.Tensor) -> torch.Tensor:
    return F.softplus(-fake).mean() if kind == "non_saturating" else -fake.mean()


class Recipe:
    """Alternating updates of D (k per G step) and G, each network data-parallel through `wrap`."""

    PROGRESS = ("train_d_loss", "train_g_loss", "val_fd")  # shown to the user each epoch

    def __init__(self, model: GAN, hyper: GANParams, wrap: Callable[[nn.Module], nn.Module], device: torch.device):
        self.model, self.hyper, self.device = model, hyper, device
        self.generator = wrap(model.generator)
        self.discriminator = wrap(model.discriminator)
        betas = (0.0, 0.9) if hyper.loss == "wgan_gp" else (0.5, 0.999)
        self.g_optimizer = torch.optim.Adam(self.generator.parameters(), lr=hyper.g_learning_rate, betas=betas)
        self.d_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=hyper.d_learning_rate, betas=betas)
        if model.ema is not None:
            model.ema.multi_avg_fn = get_ema_multi_avg_fn(hyper.ema_decay)
        self.fixed_noise = torch.randn(64, model.config.latent_dim, generator=torch.Generator().manual_seed(1234))

    def _noise(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.model.config.latent_dim, device=self.device)

    def _discriminator_step(self, real: torch.Tensor, fake: torch.Tensor) -> float:
        fake = fake.detach()
        if self.hyper.loss == "wgan_gp":
            mix = torch.rand(len(real), 1, 1, 1, device=self.device)
            between = (mix * real + (1 - mix) * fake).requires_grad_(True)
            # One forward over real, fake and interpolates: DDP expects one forward per backward.
            real_out, fake_out, between_out = self.discriminator(torch.cat([real, fake, between])).split(len(real))
            (grad,) = torch.autograd.grad(between_out.sum(), between, create_graph=True)
            penalty = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
            loss = discriminator_loss("wgan_gp", real_out, fake_out) + self.hyper.gradient_penalty * penalty
        else:
            real_out, fake_out = self.discriminator(torch.cat([real, fake])).split(len(real))
            loss = discriminator_loss(self.hyper.loss, real_out, fake_out)
        self.d_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.d_optimizer.step()
        return loss.item()

    def _generator_step(self, fake: torch.Tensor) -> float:
        no_sync = getattr(self.discriminator, "no_sync", None)
        # D's gradients from the G step are discarded, so they need no all-reduce.
        with no_sync() if no_sync else torch.enable_grad():
            loss = generator_loss(self.hyper.loss, self.discriminator(fake))
        self.g_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.g_optimizer.step()
        if self.model.ema is not None:
            self.model.ema.update_parameters(self.model.generator)
        return loss.item()

    def train_epoch(self, loader: DataLoader) -> dict[str, float]:
        self.generator.train()
        self.discriminator.train()
        totals = torch.zeros(5, dtype=torch.float64)  # d loss sum, d steps, g loss sum, g steps, images
        for step, (batch,) in enumerate(loader, start=1):
            real = batch.to(self.device, non_blocking=True) * 2 - 1
            # The G step reuses the fakes of the D step just before it (one generator forward per batch).
            fake = self.generator(self._noise(len(real)))
            totals[0] += self._discriminator_step(real, fake)
            totals[1] += 1
            if step % self.hyper.d_steps_per_g_step == 0:
                totals[2] += self._generator_step(fake)
                totals[3] += 1
            totals[4] += len(real)
        d_sum, d_steps, g_sum, g_steps, images = all_reduce(totals).tolist()
        return {"d_loss": d_sum / max(d_steps, 1), "g_loss": g_sum / max(g_steps, 1), "g_steps": g_steps,
                "images": int(images)}

    def validate(self, images: torch.Tensor, batch_size: int, rank: int, world_size: int, seed: int,
                 features: nn.Module | None = None) -> dict[str, float]:
        """Fréchet distance of as many samples as validation images (every worker computes the same)."""
        if features is None:
            return {}
        from gen_platform.evaluation.distribution import frechet_distance

        samples = self.model.sample(len(images), torch.Generator().manual_seed(seed))
        return {"fd": frechet_distance(images, samples, features, batch_size)}

    def snapshot(self) -> torch.Tensor:
        """The fixed-noise grid of this epoch (uint8), kept in the checkpoint to show progress across epochs."""
        return (self.model.sample(len(self.fixed_noise), noise=self.fixed_noise) * 255).round().to(torch.uint8).cpu()

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "g_optimizer": self.g_optimizer.state_dict(),
                "d_optimizer": self.d_optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.g_optimizer.load_state_dict(state["g_optimizer"])
        self.d_optimizer.load_state_dict(state["d_optimizer"])
