_base_ = [
    '../_base_/models/naclip_vit-b16.py',
    '../_base_/datasets/voc20.py',
    '../_base_/default_runtime.py',
]
# The release's cfg_voc20.py (whole image, PAMR).
model = dict(
    name_path='{{ fileDirname }}/../classnames/naclip/cls_voc20.txt',
    slide_crop=0,
)
