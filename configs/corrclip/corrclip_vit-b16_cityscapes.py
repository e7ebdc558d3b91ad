_base_ = [
    '../_base_/models/corrclip_vit-b16.py',
    '../_base_/datasets/cityscapes.py',
    '../_base_/default_runtime.py',
]
# The release's cfg_city_scapes.py; its masks: region_masks/city (HF dataset dk258/CorrCLIP).
model = dict(
    name_path='{{ fileDirname }}/../classnames/corrclip/cls_cityscapes.txt',
    masks='data/region_masks/city',
    slide_crop=224,
    slide_stride=112,
)
# Its test Resize(scale=(2048, 448)), over the dataset base's short side.
test_pipeline = [dict(step, scale=(2048, 448)) if step.type == 'Resize' else step
                 for step in _base_.test_pipeline]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
