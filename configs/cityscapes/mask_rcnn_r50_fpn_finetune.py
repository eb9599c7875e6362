# The MMDetection fine-tune tutorial's example in 3.x keys: Mask R-CNN R50-FPN from a COCO
# checkpoint to the 8 Cityscapes classes (the same fine-tune in the tutorial's own 2.x keys is
# mask_rcnn_r50_fpn_finetune_2x_style.py; tests/test_configs.py shows both resolve alike).
# Data: `python -m raytune_ft.data cityscapes /path/to/cityscapes data/cityscapes`.
# Tune:  python -m raytune_ft.search --config configs/cityscapes/mask_rcnn_r50_fpn_finetune.py \
#          --space search_spaces/cityscapes.yaml --gpus-per-worker 1 --workers 8
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    '../_base_/cityscapes_instance_coco_metric.py',
    'mmdet::_base_/default_runtime.py',
    'mmdet::_base_/schedules/schedule_1x.py',
]

# 1. Heads: 8 classes (raytune_ft also sets every class head from the data set's classes).
#    The backbone is not initialised from ImageNet: load_from brings the whole COCO model.
model = dict(
    backbone=dict(init_cfg=None),
    roi_head=dict(
        bbox_head=dict(
            type='Shared2FCBBoxHead',
            num_classes=8,
            loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0)),
        mask_head=dict(num_classes=8)))

# 2. Data: inherited (data/cityscapes/, CityscapesDataset's 8 classes, each epoch = 8 passes).

# 3. The fine-tune schedule raytune_ft tunes. lr is for a total batch of 8 (8 GPUs x 1 image).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=8, milestones=[7], gamma=0.1),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=8, val_interval=1)
auto_scale_lr = dict(enable=False, base_batch_size=8)
default_hooks = dict(logger=dict(interval=100))

# 4. Start from MMDetection's COCO Mask R-CNN (downloaded once per node into $TORCH_HOME).
load_from = 'https://download.openmmlab.com/mmdetection/v2.0/mask_rcnn/mask_rcnn_r50_fpn_1x_coco/mask_rcnn_r50_fpn_1x_coco_20200205-d4b0c5d6.pth'  # noqa
