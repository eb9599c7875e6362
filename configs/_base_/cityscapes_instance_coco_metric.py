# MMDetection's Cityscapes instance data set (mmdet::_base_/datasets/cityscapes_instance.py:
# data/cityscapes/, RepeatDataset x8, 2048x[800,1024] multi-scale) with the COCO box and mask
# metrics only. mmdet's base also runs CityScapesMetric, which needs the gtFine *_instanceIds.png
# images under data/cityscapes/gtFine/val and cityscapesscripts' evaluator; the COCO metrics need
# just the JSON `python -m raytune_ft.data cityscapes` writes, and are what the model zoo reports
# (box AP 40.9, mask AP 36.4 for the tutorial's fine-tune).
_base_ = ['mmdet::_base_/datasets/cityscapes_instance.py']

val_evaluator = dict(
    _delete_=True,
    type='CocoMetric',
    ann_file='data/cityscapes/annotations/instancesonly_filtered_gtFine_val.json',
    metric=['bbox', 'segm'])
test_evaluator = val_evaluator
