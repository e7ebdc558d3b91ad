_base_ = [
    '../_base_/models/corrclip_vit-b16.py',
    '../_base_/datasets/coco_stuff164k.py',
    '../_base_/default_runtime.py',
]
# The release's cfg_coco_stuff164k.py; its masks: region_masks/coco (HF dataset dk258/CorrCLIP).
model = dict(
    name_path='{{ fileDirname }}/../classnames/corrclip/cls_coco_stuff164k.txt',
    masks='data/region_masks/coco',
)
