# ProxyCLIP (Lan et al., ECCV 2024) on CLIP ViT-B/16 with DINO ViT-B/8, as released
# (mc-lan/ProxyCLIP@e7b767f): CLIP's last block attends with DINO's patch similarities
# (the proxy attention: beta times the mean similarity as threshold, gamma as
# temperature), no residual, no FFN; features on DINO's 8-pixel grid; each window padded
# to a multiple of 56 pixels. Benchmark configs set name_path, prob_thd and, for
# Cityscapes, the crop.
model = dict(
    type='SFPSegmentor',
    clip_path='ViT-B/16',  # a model name (downloaded once, sha256-checked) or a local file
    # The vision foundation model: a name (dino_vitb8, dino_vitb16, dino_vits8, dino_vits16:
    # DINO's published weights, downloaded once) or a local file.
    vfm_path='dino_vitb8',
    name_path=None,
    encoder=dict(type='ProxyCLIPEncoder', beta=1.2, gamma=3.0),
    # purify=True adds SFP's outlier detection (pm) and mitigation before the last block;
    # the release has none.
    purify=False,
    pm='SOM',
    logit_scale=40,
    prob_thd=0.0,
    area_thd=None,
    slide_crop=336,
    slide_stride=112,
    pad_crops=56,  # a window side that is not a multiple of 56 is padded, as released
    pamr_steps=0,
    precision=None,  # fp16 on GPU, fp32 on CPU; 'bf16' and 'fp64' also work
    crop_batch_size=None,  # None: as many crops per batch as fit memory_budget_mb
    memory_budget_mb=None,  # None: half the free GPU memory, or 2 GiB on the CPU
    return_probs=False,
)
