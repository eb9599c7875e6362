"""Dataset converters: Cityscapes, KITTI and Pascal VOC into the COCO JSON that mmdet's
`CocoDataset` (and raytune_ft's preflight) read. `python -m raytune_ft.data --help`.

Every converter reads and checks all of its input before it writes anything, and writes its
output through a staging folder, so bad input leaves no half-written data set behind.
"""
