"""β-independent likelihood scores of a VAE: the negative ELBO at β=1, in nats per image."""

from __future__ import annotations

import torch
import torch.distributed as dist


def all_reduce(totals: torch.Tensor) -> torch.Tensor:
    """Sum over data-parallel workers; a no-op in a single process."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(totals)
    return totals


@torch.no_grad()
def neg_elbo(model: torch.nn.Module, images: torch.Tensor, batch_size: int, device: torch.device | str = "cpu",
             rank: int = 0, world_size: int = 1, seed: int = 0) -> dict[str, float]:
    """Mean reconstruction, KL and their sum over `images` (this worker's strided slice, summed over workers).

    The latent noise is seeded, so the same model on the same images always gets the same score.
    """
    model.eval()
    rng_state = torch.random.get_rng_state()
    torch.manual_seed(seed + rank)
    totals = torch.zeros(3, dtype=torch.float64)
    for start in range(rank * batch_size, len(images), world_size * batch_size):
        outputs = model(images[start:start + batch_size].to(device))
        totals += torch.tensor([outputs["recon"].sum().item(), outputs["kl"].sum().item(), len(outputs["kl"])],
                               dtype=torch.float64)
    torch.random.set_rng_state(rng_state)
    recon, kl, count = all_reduce(totals).tolist()
    count = max(count, 1.0)
    return {"recon": recon / count, "kl": kl / count, "neg_elbo": (recon + kl) / count}


@torch.no_grad()
def importance_weighted_log_likelihoods(model: torch.nn.Module, images: torch.Tensor, samples: int,
                                        batch_size: int = 64, seed: int = 0) -> torch.Tensor:
    """log p(x) per image in nats, estimated with `samples` draws from the encoder (Burda et al. 2016).

    log p(x) ≈ logsumexp_k[log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log k; a tighter bound than the ELBO.
    """
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    normal = torch.distributions.Normal(0.0, 1.0)
    per_image = []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size]
        mean, log_var = model.encode(x)
        std = (0.5 * log_var).exp()
        eps = torch.randn((samples, *mean.shape), generator=generator)
        z = mean + std * eps                                               # k × B × D
        logits = model.decode(z.flatten(0, 1)).view(samples, *x.shape)
        log_px_z = -torch.nn.functional.binary_cross_entropy_with_logits(
            logits, x.expand_as(logits), reduction="none").flatten(2).sum(2)
        log_pz = normal.log_prob(z).sum(2)
        log_qz_x = torch.distributions.Normal(mean, std).log_prob(z).sum(2)
        log_weights = log_px_z + log_pz - log_qz_x
        per_image.append(torch.logsumexp(log_weights, dim=0) - torch.log(torch.tensor(float(samples))))
    return torch.cat(per_image) if per_image else torch.zeros(0)


def importance_weighted_nll(model: torch.nn.Module, images: torch.Tensor, samples: int, batch_size: int = 64,
                            seed: int = 0) -> float:
    """-log p(x) in nats per image (mean of `importance_weighted_log_likelihoods`)."""
    log_px = importance_weighted_log_likelihoods(model, images, samples, batch_size, seed)
    return -log_px.mean().item() if len(log_px) else 0.0
