# Template: fine-tune MMDetection's COCO Faster R-CNN on your own Pascal VOC-layout data set,
# read directly by mmdet's VOCDataset (XML) and scored with VOC mAP@0.5 (`--metric
# pascal_voc/mAP`). For COCO metrics, convert instead: `python -m raytune_ft.data voc ...` and
# use faster_rcnn_r50_fpn_coco_template.py. Change the three marked places; num_classes follows
# `classes` (set by raytune_ft).
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/voc0712.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]

data_root = 'data/my_voc/'                            # <- 1. the folder holding VOC2012/ (or yours)
classes = ('class_a', 'class_b')                      # <- 2. your classes (the XML <name>s)
train_list, val_list = 'VOC2012/ImageSets/Main/train.txt', 'VOC2012/ImageSets/Main/val.txt'
prefix = dict(sub_data_root='VOC2012/')               # <- 3. your lists and sub-folder

metainfo = dict(classes=classes)
model = dict(backbone=dict(init_cfg=None))
train_dataloader = dict(
    batch_size=2,
    dataset=dict(
        _delete_=True,
        type='VOCDataset',
        data_root=data_root,
        metainfo=metainfo,
        ann_file=train_list,
        data_prefix=prefix,
        filter_cfg=dict(filter_empty_gt=True, min_size=32, bbox_min_size=32),
        pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(
    batch_size=2,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file=val_list,
                 data_prefix=prefix))
test_dataloader = val_dataloader
val_evaluator = dict(type='VOCMetric', metric='mAP', eval_mode='11points')
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
