_base_ = [
    '../_base_/models/corrclip_vit-b16.py',
    '../_base_/datasets/ade20k.py',
    '../_base_/default_runtime.py',
]
# The release's cfg_ade20k.py; its masks: region_masks/ade (HF dataset dk258/CorrCLIP).
model = dict(
    name_path='{{ fileDirname }}/../classnames/corrclip/cls_ade20k.txt',
    masks='data/region_masks/ade',
)
# Its test Resize(scale=(2048, 448)), over the dataset base's short side.
test_pipeline = [dict(step, scale=(2048, 448)) if step.type == 'Resize' else step
                 for step in _base_.test_pipeline]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
