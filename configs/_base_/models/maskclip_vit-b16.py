# MaskCLIP (Zhou et al., ECCV 2022) on CLIP ViT-B/16, run by the ClearCLIP release's
# segmentor (model_type='MaskCLIP'): identity attention in the last block, no residual, no FFN.
_base_ = './clearclip_vit-b16.py'
model = dict(encoder=dict(type='MaskCLIPEncoder'))
