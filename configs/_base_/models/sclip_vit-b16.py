# SCLIP (Wang et al., ECCV 2024) on CLIP ViT-B/16, as released (wangf3014/SCLIP@b56bd30):
# correlative self-attention in a last block that keeps its residual and FFN. Benchmark
# configs set name_path and the thresholds.
model = dict(
    type='SFPSegmentor',
    clip_path='ViT-B/16',
    name_path=None,
    encoder=dict(type='SCLIPEncoder'),
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
