_base_ = [
    '../_base_/models/naclip_vit-b16.py',
    '../_base_/datasets/voc21.py',
    '../_base_/default_runtime.py',
]
# The release's cfg_voc21.py (whole image, PAMR).
model = dict(
    name_path='{{ fileDirname }}/../classnames/naclip/cls_voc21.txt',
    slide_crop=0,
    prob_thd=0.1,
)
