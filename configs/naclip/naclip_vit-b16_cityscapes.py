_base_ = [
    '../_base_/models/naclip_vit-b16.py',
    '../_base_/datasets/cityscapes.py',
    '../_base_/default_runtime.py',
]
# The release's cfg_city_scapes.py.
model = dict(
    name_path='{{ fileDirname }}/../classnames/naclip/cls_cityscapes.txt',
)
