_base_ = [
    '../_base_/models/proxyclip_vit-b16.py',
    '../_base_/datasets/coco_stuff164k.py',
    '../_base_/default_runtime.py',
]
# The release's cfg_coco_stuff.py.
model = dict(
    name_path='{{ fileDirname }}/../classnames/proxyclip/cls_coco_stuff164k.txt',
)
