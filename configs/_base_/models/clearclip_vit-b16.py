# ClearCLIP (Lan et al., ECCV 2024) on CLIP ViT-B/16, as released (mc-lan/ClearCLIP@ad68a40):
# q-q attention in the last block, no residual, no FFN. Benchmark configs set name_path,
# prob_thd and, for Cityscapes, the crop. The release's segmentor also serves CLIP and
# MaskCLIP (clip_vit-b16.py, maskclip_vit-b16.py).
model = dict(
    type='SFPSegmentor',
    clip_path='ViT-B/16',  # a model name (downloaded once, sha256-checked) or a local file
    name_path=None,
    encoder=dict(type='ClearCLIPEncoder'),
    # purify=True adds SFP's outlier detection (pm) and mitigation before the last block;
    # the release has none.
    purify=False,
    pm='SOM',
    logit_scale=50,
    prob_thd=0.0,
    area_thd=None,
    slide_crop=448,
    slide_stride=224,
    pad_crops=True,  # a window side that is not a multiple of 16 is padded, as released
    pamr_steps=0,
    precision=None,  # fp16 on GPU, fp32 on CPU; 'bf16' and 'fp64' also work
    crop_batch_size=None,  # None: as many crops per batch as fit memory_budget_mb
    memory_budget_mb=None,  # None: half the free GPU memory, or 2 GiB on the CPU
    return_probs=False,
)
