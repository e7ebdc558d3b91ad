_base_ = [
    '../_base_/models/naclip_vit-b16.py',
    '../_base_/datasets/coco_object.py',
    '../_base_/default_runtime.py',
]
# The release's cfg_coco_object.py.
model = dict(
    name_path='{{ fileDirname }}/../classnames/naclip/cls_coco_object.txt',
    prob_thd=0.1,
)
