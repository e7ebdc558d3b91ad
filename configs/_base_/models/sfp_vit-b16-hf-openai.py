# SFP on OpenAI's ViT-B/16 weights from their Hugging Face transformers folder (the same
# weights as clip_path='ViT-B/16', another file layout). QuickGELU from config.json.
_base_ = './sfp_vit-b16.py'
model = dict(clip_path='hf-hub:openai/clip-vit-base-patch16')
