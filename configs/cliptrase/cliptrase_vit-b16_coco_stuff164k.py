_base_ = [
    '../_base_/models/cliptrase_vit-b16.py',
    '../_base_/datasets/coco_stuff164k.py',
    '../_base_/default_runtime.py',
]
# The release's COCO171 names.
model = dict(
    name_path='{{ fileDirname }}/../classnames/cliptrase/cls_coco_stuff164k.txt',
)
