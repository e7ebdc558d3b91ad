# CLIP ViT-B/16 as it is (the original last block), run by the ClearCLIP release's segmentor
# (model_type='vanilla', ignore_residual=False) with its settings.
_base_ = './clearclip_vit-b16.py'
model = dict(encoder=dict(type='CLIPEncoder'))
