# SFP on open_clip's ViT-L/14 trained on DataComp-1B (datacomp_xl_s13b_b90k). Exact GELU,
# read from the hub folder's open_clip_config.json. 24 blocks: the block choices stay the
# ViT-B/16 ones (see sfp_vit-l14.py and docs/backbones.md).
_base_ = './sfp_vit-l14.py'
model = dict(clip_path='hf-hub:laion/CLIP-ViT-L-14-DataComp.XL-s13B-b90K')
