"""Each GPU-path switch gives the same loss as the plain path on CPU (within its precision)."""

import pytest
import torch

from gen_platform.models.gan import GANParams
from gen_platform.models import gan, vae
from gen_platform.training.acceleration import accelerated

CPU = torch.device("cpu")


def _vae_loss(**switches) -> float:
    torch.manual_seed(0)
    model = vae.ConvVAE(vae.VAEArchitecture(28, 1, 8, 8))
    prepared = accelerated(lambda m: m, CPU, **switches)(model).eval()
    x = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(2)  # the same reparameterisation noise for every variant
    return vae.loss_terms(prepared(x), beta=1.0)["loss"].item()


def _gan_losses(**switches) -> tuple[float, float]:
    torch.manual_seed(0)
    hyper = GANParams(latent_dim=8, hidden_channels=8, loss="wgan_gp")
    model = gan.GAN(gan.GANArchitecture(28, 1, 8, 8))
    recipe = gan.Recipe(model, hyper, wrap=accelerated(lambda m: m, CPU, **switches), device=CPU)
    real = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 2 - 1
    torch.manual_seed(3)
    fake = recipe.parallel_generator(torch.randn(8, 8))
    d_loss = recipe._discriminator_step(real, fake).item()
    return d_loss, recipe._generator_step(fake).item()



@pytest.mark.parametrize(("switches", "tolerance"), [
    ({"channels_last": True}, 1e-5),
    ({"precision": "bf16"}, 2e-2),
    ({"compile": True}, 1e-4),
    ({"precision": "bf16", "channels_last": True}, 2e-2),
])
def test_vae_loss_matches_fp32(switches, tolerance):
    import torch._inductor.config

    # Compiled code draws random numbers from its own generator unless told to use eager's.
    with torch._inductor.config.patch(fallback_random=True):
        baseline = _vae_loss()
        assert _vae_loss(**switches) == pytest.approx(baseline, rel=tolerance)


@pytest.mark.parametrize(("switches", "tolerance"), [
    ({"channels_last": True}, 1e-4),
    ({"precision": "bf16"}, 5e-2),
])
def test_gan_losses_match_fp32_including_gradient_penalty(switches, tolerance):
    baseline = _gan_losses()
    variant = _gan_losses(**switches)
    assert variant == pytest.approx(baseline, rel=tolerance, abs=tolerance)


def test_bf16_really_runs_in_bfloat16_and_returns_float32():
    seen = []
    model = torch.nn.Linear(4, 4)
    model.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    out = accelerated(lambda m: m, CPU, precision="bf16")(model)(torch.rand(2, 4))
    assert seen == [torch.bfloat16] and out.dtype == torch.float32
