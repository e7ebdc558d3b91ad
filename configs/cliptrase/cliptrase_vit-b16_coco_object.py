_base_ = [
    '../_base_/models/cliptrase_vit-b16.py',
    '../_base_/datasets/coco_object.py',
    '../_base_/default_runtime.py',
]
# The release's COCO80 names (its 107 background names on line 1, mmseg's class order).
model = dict(
    name_path='{{ fileDirname }}/../classnames/cliptrase/cls_coco_object.txt',
    encoder=dict(background_class=0),
)
