"""Each GPU-path switch gives the same loss as the plain path on CPU (within its precision); `precision: auto`
picks what the device does best."""

import numpy as np
import pytest
import torch

from gen_platform.models.gan import GANParams
from gen_platform.models import gan, vae
from gen_platform.config import parse_params
from gen_platform.training.acceleration import Update, accelerated, resolve_precision
from gen_platform.training.loop import EpochLoop

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
    recipe = gan.Recipe(model, hyper, CPU)
    prepare = accelerated(lambda m: m, CPU, **switches)
    recipe.configure({name: prepare(network) for name, network in recipe.networks().items()}, Update("fp32", CPU))
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


@pytest.mark.parametrize(("device", "bf16_units", "expected"), [
    ("cpu", False, "fp32"), ("cuda", True, "bf16"), ("cuda", False, "fp16")])
def test_auto_precision_follows_the_device(monkeypatch, device, bf16_units, expected):
    # No GPU here: what torch reports about one is stood in for (bench/gpu_check.py runs it on a real one).
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16_units)
    assert resolve_precision("auto", torch.device(device)) == expected
    assert resolve_precision("fp32", torch.device(device)) == "fp32"  # an explicit choice stands


def test_fp16_trains_through_a_gradient_scaler_per_optimizer():
    params = parse_params({"model": {"family": "gan", "gan": {"latent_dim": 8, "hidden_channels": 8}},
                           "train": {"precision": "fp16"}})
    loop = EpochLoop(gan.FAMILY, params, CPU)
    batches = [np.random.default_rng(i).integers(0, 256, (8, 8, 8, 1), dtype=np.uint8) for i in range(4)]
    stats = loop.train_epoch(batches)
    assert np.isfinite([stats["d_loss"], stats["g_loss"]]).all()
    scalers = loop.recipe.update.scalers
    assert len(scalers) == 2 and all(scaler.get_scale() > 0 for scaler in scalers.values())
