"""The demo's pretrained weights: torchvision's ImageNet MobileNetV2 state dict, renamed for
mmdet's MobileNetV2, must load completely and compute what the original network computes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from raytune_ft.data.weights import convert_mobilenet_v2, mobilenet_v2_weights_path

# torchvision's MobileNetV2 (t = expansion, c = channels, n = blocks, s = first stride).
SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
            (6, 160, 3, 2), (6, 320, 1, 1)]
# torchvision feature index after which each mmdet output (layer1..7, conv2) is taken.
LAST_FEATURE_OF_OUTPUT = [1, 3, 6, 10, 13, 16, 17, 18]


def _bn(x, sd, key):
    return F.batch_norm(x, sd[f"{key}.running_mean"], sd[f"{key}.running_var"],
                        sd[f"{key}.weight"], sd[f"{key}.bias"], training=False, eps=1e-5)


def _conv_bn_relu6(x, sd, key, stride=1, groups=1):
    w = sd[f"{key}.0.weight"]
    x = F.conv2d(x, w, stride=stride, padding=w.shape[-1] // 2, groups=groups)
    return F.relu6(_bn(x, sd, f"{key}.1"))


def reference_features(sd: dict[str, torch.Tensor], x: torch.Tensor) -> list[torch.Tensor]:
    """torchvision's MobileNetV2 `features`, written out in plain torch from the state dict."""
    outputs = {}
    x = _conv_bn_relu6(x, sd, "features.0", stride=2)
    index, channels = 1, 32
    for t, c, n, s in SETTINGS:
        for block in range(n):
            stride, key, y = (s if block == 0 else 1), f"features.{index}.conv", x
            unit = 0
            if t != 1:
                y = _conv_bn_relu6(y, sd, f"{key}.0")
                unit = 1
            y = _conv_bn_relu6(y, sd, f"{key}.{unit}", stride=stride, groups=y.shape[1])
            y = _bn(F.conv2d(y, sd[f"{key}.{unit + 1}.weight"]), sd, f"{key}.{unit + 2}")
            x = x + y if stride == 1 and channels == c else y
            outputs[index], channels, index = x, c, index + 1
    outputs[18] = _conv_bn_relu6(x, sd, "features.18")
    return [outputs[i] for i in LAST_FEATURE_OF_OUTPUT]


@pytest.fixture(scope="module")
def imagenet_state() -> dict[str, torch.Tensor]:
    return torch.load(mobilenet_v2_weights_path(), map_location="cpu", weights_only=True)


def test_every_backbone_tensor_is_used_and_none_is_missing(imagenet_state):
    from mmdet.models.backbones import MobileNetV2

    converted = convert_mobilenet_v2(imagenet_state)
    backbone = MobileNetV2(out_indices=(7,))
    result = backbone.load_state_dict(converted, strict=False)
    assert result.missing_keys == [] and result.unexpected_keys == []
    dropped = set(imagenet_state) - {k for k in imagenet_state if k.startswith("classifier.")}
    assert len(converted) == len(dropped) == len(backbone.state_dict())
    for key, value in converted.items():  # shapes match exactly, nothing was broadcast
        assert backbone.state_dict()[key].shape == value.shape, key


def test_converted_backbone_computes_the_reference_mobilenet_v2(imagenet_state):
    from mmdet.models.backbones import MobileNetV2

    backbone = MobileNetV2(out_indices=tuple(range(8)))
    backbone.load_state_dict(convert_mobilenet_v2(imagenet_state), strict=True)
    backbone.eval()
    x = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = backbone(x)
        reference = reference_features(imagenet_state, x)
    assert [o.shape[1] for o in ours] == [16, 24, 32, 64, 96, 160, 320, 1280]
    for mine, ref in zip(ours, reference):
        assert mine.shape == ref.shape
        torch.testing.assert_close(mine, ref, rtol=1e-4, atol=1e-4)


def test_demo_checkpoint_loads_every_backbone_tensor_into_the_demo_detector(tmp_path):
    from mmengine.config import Config
    from mmengine.runner.checkpoint import load_checkpoint
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    from raytune_ft.data.demo import DEMO_CONFIG
    from raytune_ft.data.weights import write_backbone_checkpoint

    register_all_modules()
    path = write_backbone_checkpoint(tmp_path / "mnv2.pth")
    model = MODELS.build(Config.fromfile(str(DEMO_CONFIG)).model)
    before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("backbone.")}
    load_checkpoint(model, str(path), map_location="cpu", strict=False)
    after = model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])
               and not k.endswith("num_batches_tracked")]
    assert len(changed) == len([k for k in before if not k.endswith("num_batches_tracked")])
