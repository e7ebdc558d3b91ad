_base_ = [
    '../_base_/models/corrclip_vit-b16.py',
    '../_base_/datasets/voc21.py',
    '../_base_/default_runtime.py',
]
# The release's cfg_voc21.py; its masks: region_masks/voc (HF dataset dk258/CorrCLIP).
model = dict(
    name_path='{{ fileDirname }}/../classnames/corrclip/cls_voc21.txt',
    masks='data/region_masks/voc',
    prob_thd=0.2,
)
