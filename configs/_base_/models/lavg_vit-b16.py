# LaVG (Kang & Cho, ECCV 2024) on CLIP ViT-B/16 with DINO ViT-B/8 object masks, as released
# (dahyun-kang/lavg@2db88e5): SCLIP's model (its window, thresholds and last block), with
# every object mask's pixels given the mask's mean. Stage 1, the panoptic cut (NCut on
# DINO's last-block keys, a dense CRF per mask), gives each image its masks. Benchmark
# configs set name_path and the thresholds.
_base_ = './sclip_vit-b16.py'
model = dict(
    # The masks: the panoptic cut run on each image (the release's stage-1 settings), on
    # the DINO of vfm_path. The release runs stage 1 first and reads its files:
    # tools/generate_masks.py writes them, and maskpred_root=<that folder> reads them.
    masks=dict(type='PanopticCut', imgsize=640, N=8, tau=0.3),
    maskpred_root=None,
    vfm_path='dino_vitb8',  # the panoptic cut's DINO: a name (downloaded once) or a file
    # remove_falsefg: in the background mask only background names may win (VOC21).
    encoder=dict(type='LaVGEncoder', remove_falsefg=False),
)
