# SFP on open_clip's ViT-L/14 trained on LAION-2B (laion2b_s32b_b82k). Exact GELU, read
# from the hub folder's open_clip_config.json. 24 blocks: the block choices stay the
# ViT-B/16 ones (see sfp_vit-l14.py and docs/backbones.md).
_base_ = './sfp_vit-l14.py'
model = dict(clip_path='hf-hub:laion/CLIP-ViT-L-14-laion2B-s32B-b82K')
