# ProxyCLIP with SAM ViT-B's image encoder as its vision foundation model (the release's
# vfm_model='sam', sam_vit_b_01ec64.pth): every window stretched to 1024 x 1024, features
# on SAM's 64 x 64 grid; all else as with DINO.
_base_ = './proxyclip_vit-b16_context60.py'
model = dict(vfm_path='sam_vit_b')
