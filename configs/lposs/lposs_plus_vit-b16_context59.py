_base_ = ['./lposs_vit-b16_context59.py']
# LPOSS+ as released (configs/lposs_plus.yaml): LPOSS, then the window-averaged scores
# propagated over the input image's pixels (each linked to its 13 x 13 neighbourhood by
# Lab colour distance, tau 0.01), before the synonyms' max.
model = dict(propagation=dict(pixel_refine=True))
