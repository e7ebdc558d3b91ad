# SCLIP on CLIP ViT-B/32 (the SFP paper's Table 4): the ViT-B/16 model with another backbone.
_base_ = './sclip_vit-b16.py'
model = dict(clip_path='ViT-B/32')
