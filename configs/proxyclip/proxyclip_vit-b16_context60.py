_base_ = [
    '../_base_/models/proxyclip_vit-b16.py',
    '../_base_/datasets/context60.py',
    '../_base_/default_runtime.py',
]
# The release's cfg_context60.py.
model = dict(
    name_path='{{ fileDirname }}/../classnames/proxyclip/cls_context60.txt',
    prob_thd=0.15,
)
