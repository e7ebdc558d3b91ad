_base_ = [
    '../_base_/models/proxyclip_vit-b16.py',
    '../_base_/datasets/voc21.py',
    '../_base_/default_runtime.py',
]
# The release's cfg_voc21.py.
model = dict(
    name_path='{{ fileDirname }}/../classnames/proxyclip/cls_voc21.txt',
    prob_thd=0.2,
)
