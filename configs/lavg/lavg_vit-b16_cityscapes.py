_base_ = [
    '../_base_/models/lavg_vit-b16.py',
    '../_base_/datasets/cityscapes.py',
    '../_base_/default_runtime.py',
]
# The release's cfg_city_scapes.py (class files byte-identical to SCLIP's).
model = dict(
    name_path='{{ fileDirname }}/../classnames/sclip/cls_cityscapes.txt',
)
