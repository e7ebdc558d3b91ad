# LPOSS+ (Stojnic et al., CVPR 2025), as released: LPOSS (lposs_vit-b16.py), then the
# window-averaged scores propagated over the pixels of the input image (each linked to
# its 13 x 13 neighbourhood by Lab colour distance, tau 0.01), before the synonyms' max.
_base_ = './lposs_vit-b16.py'
model = dict(propagation=dict(pixel_refine=True))
