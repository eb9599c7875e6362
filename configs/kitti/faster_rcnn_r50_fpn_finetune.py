# KITTI 2D object detection: Faster R-CNN R50-FPN fine-tuned from MMDetection's COCO model to
# KITTI's 8 object types (DontCare regions are dropped by the converter).
# Data: `python -m raytune_ft.data kitti /path/to/kitti data/kitti` (seeded 80/20 train/val
#        split of training/; see README "Data").
# Tune:  python -m raytune_ft.search --config configs/kitti/faster_rcnn_r50_fpn_finetune.py \
#          --space search_spaces/kitti.yaml --gpus-per-worker 1 --workers 4
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]

data_root = 'data/kitti/'
metainfo = dict(classes=('Car', 'Van', 'Truck', 'Pedestrian', 'Person_sitting', 'Cyclist',
                         'Tram', 'Misc'))

# 1. Heads: num_classes follows metainfo.classes (raytune_ft sets it; 8 here).
model = dict(backbone=dict(init_cfg=None), roi_head=dict(bbox_head=dict(num_classes=8)))

# 2. Data: the COCO JSON the converter writes; images stay in KITTI's training/image_2.
#    mmdet's (1333, 800) keep-ratio resize scales KITTI's 1242x375 frames to about 1333x402.
train_dataloader = dict(
    batch_size=2,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/train.json',
        data_prefix=dict(img='training/image_2/')))
val_dataloader = dict(
    batch_size=2,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/val.json',
        data_prefix=dict(img='training/image_2/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/val.json', metric='bbox')
test_evaluator = val_evaluator

# 3. The fine-tune schedule raytune_ft tunes: lr for a total batch of 16 (8 GPUs x 2 images).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=8, milestones=[6], gamma=0.1),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=8, val_interval=1)
auto_scale_lr = dict(enable=False, base_batch_size=16)
default_hooks = dict(logger=dict(interval=50))

# 4. Start from MMDetection's COCO Faster R-CNN (downloaded once per node into $TORCH_HOME).
load_from = 'https://download.openmmlab.com/mmdetection/v2.0/faster_rcnn/faster_rcnn_r50_fpn_1x_coco/faster_rcnn_r50_fpn_1x_coco_20200130-047c8118.pth'  # noqa
