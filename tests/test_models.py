"""The VGG-16 slice classifier: shapes, torchvision compatibility, weights, dilation, layer names."""
from __future__ import annotations

import urllib.error

import pytest
import torch
import torchvision
from torch import nn

from umcam_lib.models import vgg16_classifier
from umcam_lib.models import vgg as vgg_mod
from umcam_lib.models.vgg import BLOCK_LAYERS, GREY_MEAN, GREY_STD, load_vgg_features, resolve_layers


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: torch on one thread


def _torchvision_features_shapes() -> dict[str, torch.Size]:
    with torch.device("meta"):
        tv = torchvision.models.vgg16(weights=None)
    return {k: v.shape for k, v in tv.state_dict().items() if k.startswith("features.")}


def _fake_imagenet_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A torchvision-style VGG-16 state dict (RGB first layer) with random values."""
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=g) * 0.05 for k, shape in _torchvision_features_shapes().items()}


def test_forward_returns_two_logits_per_image():
    model = vgg16_classifier(width=0.0625)
    x = torch.rand(3, 1, 64, 96)
    out = model(x)
    assert out.shape == (3, 2)
    assert torch.isfinite(out).all()
    assert model.class_map(x).shape == (3, 2, 2, 3)  # output stride 32


def test_forward_rejects_wrong_channel_count():
    model = vgg16_classifier(width=0.0625)
    with pytest.raises(ValueError, match=r"\[B, 1, H, W\]"):
        model(torch.rand(2, 3, 64, 64))


def test_width_one_matches_torchvision_names_and_shapes():
    with torch.device("meta"):
        model = vgg16_classifier(width=1.0, in_channels=3)
    ours = {k: v.shape for k, v in model.state_dict().items() if k.startswith("features.")}
    assert ours == _torchvision_features_shapes()
    assert set(model.state_dict()) - set(ours) == {"classifier.weight", "classifier.bias"}
    assert model.state_dict()["classifier.weight"].shape == (2, 512, 1, 1)


def test_width_scales_channels():
    model = vgg16_classifier(width=0.25)
    convs = [m.out_channels for m in model.features if isinstance(m, nn.Conv2d)]
    assert convs == [16, 16, 32, 32, 64, 64, 64, 128, 128, 128, 128, 128, 128]


def test_rgb_weights_load_into_one_channel_model(tmp_path):
    state = _fake_imagenet_state()
    path = tmp_path / "vgg16-local.pth"
    torch.save(state, path)
    model = vgg16_classifier(width=1.0, in_channels=1, pretrained=str(path))
    w = model.features[0].weight
    assert w.shape == (64, 1, 3, 3)
    torch.testing.assert_close(w, state["features.0.weight"].sum(dim=1, keepdim=True))
    torch.testing.assert_close(model.features[28].weight, state["features.28.weight"])
    # summing over RGB is exact for a grey image repeated on three channels
    x = torch.rand(2, 1, 32, 32)
    xn = (x - GREY_MEAN) / GREY_STD
    rgb = nn.functional.conv2d(xn.repeat(1, 3, 1, 1), state["features.0.weight"], state["features.0.bias"], padding=1)
    torch.testing.assert_close(model.features[0](model.normalise(x)), rgb, rtol=1e-4, atol=1e-4)


def test_rgb_weights_load_unchanged_into_three_channel_model():
    state = _fake_imagenet_state(1)
    model = vgg16_classifier(width=1.0, in_channels=3)
    load_vgg_features(model, state)
    torch.testing.assert_close(model.features[0].weight, state["features.0.weight"])


def test_pretrained_weights_need_width_one():
    with pytest.raises(ValueError, match="width=1"):
        vgg16_classifier(width=0.5, pretrained=True)


def test_pretrained_path_must_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such weights file"):
        vgg16_classifier(width=1.0, pretrained=str(tmp_path / "missing.pth"))


def test_pretrained_without_internet_fails_clearly(tmp_path, monkeypatch):
    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError("no internet")

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(RuntimeError) as err:
        vgg16_classifier(width=1.0, pretrained=True)
    msg = str(err.value)
    assert "vgg16-397923af.pth" in msg
    assert str(tmp_path / "hub" / "checkpoints") in msg  # where to put the file
    assert "pretrained='path/to/" in msg  # or pass its path
    assert "pretrained=false" in msg


def test_dilated_variant_has_output_stride_8():
    x = torch.rand(1, 1, 64, 64)
    plain, dilated = vgg16_classifier(width=0.0625), vgg16_classifier(width=0.0625, dilated=True)
    assert plain.output_stride == 32 and dilated.output_stride == 8
    assert dilated.class_map(x).shape[-2:] == (8, 8)
    assert plain.class_map(x).shape[-2:] == (2, 2)
    assert dilated.features[24].dilation == (2, 2) and plain.features[24].dilation == (1, 1)
    # same parameters, so the same (ImageNet) weights load into both
    assert {k: v.shape for k, v in plain.state_dict().items()} == {k: v.shape for k, v in dilated.state_dict().items()}


@pytest.mark.parametrize("dilated", [False, True])
def test_block_layers_exist_and_are_plain_relus(dilated):
    model = vgg16_classifier(width=0.0625, dilated=dilated)
    modules = dict(model.named_modules())
    for block in ("block1", "block2", "block3", "block4", "block5"):
        m = modules[BLOCK_LAYERS[block]]
        assert isinstance(m, nn.ReLU) and not m.inplace
    assert isinstance(modules[BLOCK_LAYERS["head"]], nn.Conv2d)
    assert all(not m.inplace for m in model.modules() if isinstance(m, nn.ReLU))


def test_block_resolutions_follow_the_pooling():
    model = vgg16_classifier(width=0.0625)
    sizes = {}
    hooks = [dict(model.named_modules())[BLOCK_LAYERS[b]].register_forward_hook(
        lambda mod, inp, out, b=b: sizes.__setitem__(b, tuple(out.shape[-2:]))) for b in BLOCK_LAYERS if b != "head"]
    model(torch.rand(1, 1, 64, 64))
    for h in hooks:
        h.remove()
    assert sizes == {"block1": (64, 64), "block2": (32, 32), "block3": (16, 16), "block4": (8, 8), "block5": (4, 4)}


def test_resolve_layers():
    assert resolve_layers(["block1", "block5", "head"]) == ["features.3", "features.29", "classifier"]
    assert resolve_layers("features.22") == ["features.22"]
    with pytest.raises(ValueError, match="block6"):
        resolve_layers(["block6"])


def test_module_names_helper_matches_the_model():
    model = vgg16_classifier(width=0.0625)
    assert set(vgg_mod._module_names()) <= set(dict(model.named_modules()))


def test_batch_norm_variant_keeps_vgg_names_and_shapes():
    with torch.device("meta"):
        model = vgg16_classifier(width=1.0, in_channels=3, batch_norm=True)
    state = {k: v.shape for k, v in model.state_dict().items()}
    tv = _torchvision_features_shapes()
    assert {k: state[k] for k in tv} == tv  # conv weights / biases unchanged
    assert state["features.0.bn.weight"] == (64,) and state["features.28.bn.running_var"] == (512,)
    assert not any(".bn." in k for k in state if not k.startswith(tuple(f"features.{i}." for i in range(31))))
    assert model.config()["batch_norm"] is True


def test_batch_norm_variant_forward_and_layers():
    model = vgg16_classifier(width=0.0625, batch_norm=True)
    modules = dict(model.named_modules())
    assert all(isinstance(modules[BLOCK_LAYERS[b]], nn.ReLU) for b in BLOCK_LAYERS if b != "head")
    assert isinstance(model.features[0], nn.Conv2d) and hasattr(model.features[0], "bn")
    x = torch.rand(4, 1, 64, 64)
    assert model.train()(x).shape == (4, 2)
    assert model.eval()(x).shape == (4, 2)
    with pytest.raises(ValueError, match="batch_norm"):
        vgg16_classifier(width=1.0, batch_norm=True, pretrained=True)
