_base_ = [
    '../_base_/models/proxyclip_vit-b16.py',
    '../_base_/datasets/context59.py',
    '../_base_/default_runtime.py',
]
# The release's cfg_context59.py.
model = dict(
    name_path='{{ fileDirname }}/../classnames/proxyclip/cls_context59.txt',
)
