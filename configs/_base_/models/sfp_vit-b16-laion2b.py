# SFP on open_clip's ViT-B/16 trained on LAION-2B (laion2b_s34b_b88k). Exact GELU, not
# OpenAI's QuickGELU: the hub folder's open_clip_config.json says so (no quick_gelu), and
# sfp.clip reads it from there. Downloaded once through huggingface_hub (open_clip's
# config and open_clip_model.safetensors only).
_base_ = './sfp_vit-b16.py'
model = dict(clip_path='hf-hub:laion/CLIP-ViT-B-16-laion2B-s34B-b88K')
