# SFP on MetaCLIP ViT-B/16 (2.5B CommonCrawl pairs), from Meta's Hugging Face transformers
# folder. QuickGELU, like OpenAI's: config.json's hidden_act (quick_gelu, transformers'
# default when absent) sets it per tower.
_base_ = './sfp_vit-b16.py'
model = dict(clip_path='hf-hub:facebook/metaclip-b16-fullcc2.5b')
