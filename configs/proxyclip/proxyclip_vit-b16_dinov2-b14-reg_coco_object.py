# ProxyCLIP with DINOv2 ViT-B/14 with registers as its vision foundation model (the
# release's vfm_model='dinov2': torch hub's dinov2_vitb14_reg); all else as with DINO.
_base_ = './proxyclip_vit-b16_coco_object.py'
model = dict(vfm_path='dinov2_vitb14_reg')
