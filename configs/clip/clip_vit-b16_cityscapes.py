# CLIP as it is (model_type='vanilla', ignore_residual=False),
# with the ClearCLIP release's segmentor and its settings for this benchmark.
_base_ = '../clearclip/clearclip_vit-b16_cityscapes.py'
model = dict(encoder=dict(type='CLIPEncoder'))
