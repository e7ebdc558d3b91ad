_base_ = [
    '../_base_/models/cliptrase_vit-b16.py',
    '../_base_/datasets/context60.py',
    '../_base_/default_runtime.py',
]
# The release's PC60 names (background on line 1, mmseg's class order).
model = dict(
    name_path='{{ fileDirname }}/../classnames/cliptrase/cls_context60.txt',
    encoder=dict(background_class=0),
)
