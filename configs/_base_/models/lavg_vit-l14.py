# LaVG on CLIP ViT-L/14 (the SFP paper's Table 4): the ViT-B/16 model with another backbone
# (the same DINO ViT-B/8 masks).
_base_ = './lavg_vit-b16.py'
model = dict(clip_path='ViT-L/14')
