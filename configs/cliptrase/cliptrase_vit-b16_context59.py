_base_ = [
    '../_base_/models/cliptrase_vit-b16.py',
    '../_base_/datasets/context59.py',
    '../_base_/default_runtime.py',
]
# The release's PC59 names.
model = dict(
    name_path='{{ fileDirname }}/../classnames/cliptrase/cls_context59.txt',
)
