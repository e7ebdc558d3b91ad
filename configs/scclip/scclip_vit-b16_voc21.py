_base_ = [
    '../_base_/models/scclip_vit-b16.py',
    '../_base_/datasets/voc21.py',
    '../_base_/default_runtime.py',
]
# The release's cfg_voc21.py.
model = dict(
    name_path='{{ fileDirname }}/../classnames/scclip/cls_voc21.txt',
    logit_scale=50,
    prob_thd=0.15,
    area_thd=0.1,
)
