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
