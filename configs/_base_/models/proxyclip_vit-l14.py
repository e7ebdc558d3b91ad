# ProxyCLIP on CLIP ViT-L/14 with DINO ViT-B/8 (the SFP paper's Table 4): the ViT-B/16 model
# with another CLIP backbone.
_base_ = './proxyclip_vit-b16.py'
model = dict(clip_path='ViT-L/14')
