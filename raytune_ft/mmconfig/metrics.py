"""Which metrics a config's val evaluator reports, and which one a search optimises by default.

Used by preflight (is --metric produced?), by the worker (an empty COCO result is an AP of 0)
and by the LR-step probe; no Ray, no model.
"""

from __future__ import annotations

from mmengine.config import Config

# Metric suffixes mmdet's CocoMetric reports per `metric` entry ('bbox', 'segm').
COCO_SUFFIXES = ("mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "mAP_l")

# What raytune_ft itself reports every epoch (usable as --metric too, e.g. train_loss/min).
ENGINE_METRICS = ("train_loss", "lr", "iter_time", "data_time", "iters_per_s")


def expected_metrics(cfg: Config) -> list[str]:
    """Metric keys the config's val evaluator(s) report after each validation."""
    evaluators = cfg.get("val_evaluator") or []
    evaluators = evaluators if isinstance(evaluators, list) else [evaluators]
    keys: list[str] = []
    for ev in evaluators:
        kind = ev.get("type", "")
        if kind == "CocoMetric":
            metrics = ev.get("metric", "bbox")
            prefix = ev.get("prefix") or "coco"
            for m in [metrics] if isinstance(metrics, str) else metrics:
                keys += [f"{prefix}/{m}_{s}" for s in COCO_SUFFIXES]
        elif kind == "CityScapesMetric":
            keys += [f"{ev.get('prefix') or 'cityscapes'}/{k}" for k in ("mAP", "AP50")]
        elif kind == "VOCMetric":
            keys += ["pascal_voc/mAP", "pascal_voc/AP50"]
    return keys


def default_metric(cfg: Config) -> str:
    """What a search optimises unless told: COCO box mAP, else the evaluator's first metric."""
    known = expected_metrics(cfg)
    if not known or "coco/bbox_mAP" in known:
        return "coco/bbox_mAP"
    return known[0]
