"""Standard FID from a user-supplied TorchScript extractor: plumbing, shape handling and clear errors.

Real Inception weights cannot be downloaded here, so a small scripted network with the same calling
convention as NVIDIA's detector (`forward(img, return_features=False)`, images in [0, 255]) stands in."""

import pytest
import torch
from torch import nn

from gen_platform.errors import ConfigError
from gen_platform.evaluation.distribution import frechet_distance
from gen_platform.evaluation.inception import INPUT_SIZE, load_inception


class Detector(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 5, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.logits = nn.Linear(32, 10)

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        assert img.shape[1] == 3 and img.shape[2] == 299 and img.shape[3] == 299
        pooled = self.features(img / 255)
        return pooled if return_features else self.logits(pooled)


@pytest.fixture
def detector_file(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "inception.pt"
    torch.jit.save(torch.jit.script(Detector()), str(path))
    return path


def test_extractor_gives_pool_features_for_grey_images_of_any_size(detector_file):
    features = load_inception(detector_file)
    assert features.num_features == 32  # features, not the 10 logits
    assert features(torch.rand(5, 1, 8, 8)).shape == (5, 32)
    assert INPUT_SIZE == 299


def test_fid_is_near_zero_for_the_same_distribution_and_grows_with_noise(detector_file, digits):
    from gen_platform.data.arrays import to_tensor

    features = load_inception(detector_file)
    images = to_tensor(digits.images)
    real, other = images[:400], images[400:800]
    same = frechet_distance(real, other, features, batch_size=64)
    generator = torch.Generator().manual_seed(0)
    noisy = frechet_distance(real, (other + 0.3 * torch.randn(other.shape, generator=generator)).clamp(0, 1),
                             features, batch_size=64)
    pure_noise = frechet_distance(real, torch.rand(other.shape, generator=generator), features, batch_size=64)
    assert same < 0.05 * pure_noise and same < noisy < pure_noise


def test_missing_or_invalid_file_names_the_setting(tmp_path):
    with pytest.raises(ConfigError, match=r"evaluate.inception_weights: .*missing.pt does not exist"):
        load_inception(tmp_path / "missing.pt")
    pickled = tmp_path / "weights.pth"
    torch.save({"weight": torch.zeros(1)}, pickled)
    with pytest.raises(ConfigError, match="evaluate.inception_weights: .* is not a TorchScript module"):
        load_inception(pickled)


def test_evaluation_adds_fid_only_when_an_extractor_is_configured(detector_file, digits):
    from gen_platform.config import parse_params
    from gen_platform.data.splits import split_dataset
    from gen_platform.evaluation.classifier import ClassifierArchitecture, SavedClassifier, train_classifier
    from gen_platform.scoring import evaluate_model
    from gen_platform.models import vae

    splits = split_dataset(digits, 0, 0.1, 0.1)
    classifier = train_classifier(splits["train"], ClassifierArchitecture(8, 1, 10), 1, 128, 1e-3, 0)
    saved = SavedClassifier.of(classifier)
    evaluate = {"metric_samples": 100, "nll_importance_samples": 2}
    plain = parse_params({"evaluate": evaluate})
    model = vae.ConvVAE(vae.architecture_from(plain.data, plain.model.settings)).eval()
    assert "fid" not in evaluate_model(model, plain, splits, saved).scores
    with_fid = parse_params({"evaluate": evaluate | {"inception_weights": detector_file.name}})
    scores = evaluate_model(model, with_fid, splits, saved, root=detector_file.parent).scores
    assert scores["fid"] > 0 and scores["fd"] > 0


@pytest.mark.parametrize("size", [8, 28, 64, 512])
def test_images_are_resized_as_clean_fid_resizes_them(size):
    """Against clean-fid's own resize (`cleanfid.resize`, its "clean" mode), on fixed images: smaller and larger
    than 299, where antialiasing matters."""
    from cleanfid.resize import build_resizer

    from gen_platform.evaluation.inception import clean_resize

    generator = torch.Generator().manual_seed(size)
    images = torch.rand(3, 3, size, size, generator=generator) * 255
    ours = clean_resize(images)
    theirs = torch.stack([torch.from_numpy(build_resizer("clean")(image.permute(1, 2, 0).numpy())).permute(2, 0, 1)
                          for image in images])
    assert ours.shape == theirs.shape == (3, 3, INPUT_SIZE, INPUT_SIZE)
    assert torch.allclose(ours, theirs, atol=1e-3)
    bilinear = torch.nn.functional.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear").clamp(0, 255)
    assert (bilinear - theirs).abs().max() > 1  # the resize it replaces differs: the comparison can fail
