# LaVG (Kang & Cho, ECCV 2024) on CLIP ViT-B/16 with DINO ViT-B/8 object masks, as released
# (dahyun-kang/lavg@2db88e5). Stage 1, the panoptic cut (NCut on DINO's last-block keys,
# a dense CRF per mask), gives each image its object masks; stage 2 is SCLIP's CLIP with
# every mask's pixels given the mask's mean feature. Benchmark configs set name_path and
# the thresholds.
model = dict(
    type='SFPSegmentor',
    clip_path='ViT-B/16',  # a model name (downloaded once, sha256-checked) or a local file
    # The masks: the panoptic cut run on each image (the release's stage-1 settings), on
    # the DINO of vfm_path. The release runs stage 1 first and reads its files:
    # tools/generate_masks.py writes them, and maskpred_root=<that folder> reads them.
    masks=dict(type='PanopticCut', imgsize=640, N=8, tau=0.3),
    maskpred_root=None,
    vfm_path='dino_vitb8',  # the panoptic cut's DINO: a name (downloaded once) or a file
    name_path=None,
    # remove_falsefg: in the background mask only background names may win (VOC21).
    encoder=dict(type='LaVGEncoder', remove_falsefg=False),
    purify=False,  # True adds SFP's purification (pm) before the last block
    pm='SOM',
    logit_scale=40,
    prob_thd=0.0,
    area_thd=None,
    slide_crop=224,
    slide_stride=112,
    pamr_steps=0,
    precision=None,
    crop_batch_size=None,
    memory_budget_mb=None,
    return_probs=False,
)
