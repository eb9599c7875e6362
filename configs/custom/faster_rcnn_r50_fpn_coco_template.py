# Template: fine-tune MMDetection's COCO Faster R-CNN on your own COCO-format data set.
# Copy it, then change the three marked places. num_classes is not written anywhere: raytune_ft
# sets every class head from `classes` (and says so if a num_classes you write disagrees).
# Pascal VOC XML? Either convert it (`python -m raytune_ft.data voc VOCdevkit/VOC2012 data/mine`
# gives COCO metrics) or start from faster_rcnn_r50_fpn_voc_template.py.
# Check it before a long search:  python -m raytune_ft.search --config <your copy> --check-only
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]

data_root = 'data/my_dataset/'                       # <- 1. your data root
classes = ('class_a', 'class_b')                     # <- 2. your classes, in category order
train_ann, val_ann = 'annotations/train.json', 'annotations/val.json'  # <- 3. your files
train_images, val_images = 'train/', 'val/'          #       image folders under data_root

metainfo = dict(classes=classes)
model = dict(backbone=dict(init_cfg=None))
train_dataloader = dict(
    batch_size=2,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file=train_ann,
                 data_prefix=dict(img=train_images)))
val_dataloader = dict(
    batch_size=2,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file=val_ann,
                 data_prefix=dict(img=val_images)))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + val_ann, metric='bbox')
test_evaluator = val_evaluator

# The fine-tune schedule raytune_ft tunes (lr for a total batch of 16).
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=8, milestones=[6], gamma=0.1),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=8, val_interval=1)
auto_scale_lr = dict(enable=False, base_batch_size=16)

load_from = 'https://download.openmmlab.com/mmdetection/v2.0/faster_rcnn/faster_rcnn_r50_fpn_1x_coco/faster_rcnn_r50_fpn_1x_coco_20200130-047c8118.pth'  # noqa
