_base_ = [
    '../_base_/models/corrclip_vit-b16.py',
    '../_base_/datasets/context60.py',
    '../_base_/default_runtime.py',
]
# The release's cfg_context60.py; its masks: region_masks/context (HF dataset dk258/CorrCLIP).
model = dict(
    name_path='{{ fileDirname }}/../classnames/corrclip/cls_context60.txt',
    masks='data/region_masks/context',
    prob_thd=0.15,
)
