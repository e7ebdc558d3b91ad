_base_ = [
    '../_base_/models/cliptrase_vit-b16.py',
    '../_base_/datasets/ade20k.py',
    '../_base_/default_runtime.py',
]
# The release's ADE150 names.
model = dict(
    name_path='{{ fileDirname }}/../classnames/cliptrase/cls_ade20k.txt',
)
