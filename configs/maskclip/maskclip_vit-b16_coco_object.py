# MaskCLIP (model_type='MaskCLIP'),
# with the ClearCLIP release's segmentor and its settings for this benchmark.
_base_ = '../clearclip/clearclip_vit-b16_coco_object.py'
model = dict(encoder=dict(type='MaskCLIPEncoder'))
