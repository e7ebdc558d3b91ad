# SFP on CLIP ViT-L/14: the ViT-B/16 model with another backbone. The block choices
# (detection after block L-1, guidance from blocks 9 and 4, integrator over 4..10) follow
# the release for every depth.
_base_ = './sfp_vit-b16.py'
model = dict(clip_path='ViT-L/14')
