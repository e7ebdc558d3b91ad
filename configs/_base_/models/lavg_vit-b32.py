# LaVG on CLIP ViT-B/32 (the SFP paper's Table 4): the ViT-B/16 model with another backbone
# (the same DINO ViT-B/8 masks).
_base_ = './lavg_vit-b16.py'
model = dict(clip_path='ViT-B/32')
