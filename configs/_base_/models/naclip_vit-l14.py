# NACLIP on CLIP ViT-L/14 (the SFP paper's Table 4): the ViT-B/16 model with another backbone.
_base_ = './naclip_vit-b16.py'
model = dict(clip_path='ViT-L/14')
