_base_ = [
    '../_base_/models/cliptrase_vit-b16.py',
    '../_base_/datasets/cityscapes.py',
    '../_base_/default_runtime.py',
]
# The release has no Cityscapes setting: SFP's class file.
model = dict(
    name_path='{{ fileDirname }}/../classnames/cls_cityscapes.txt',
)
