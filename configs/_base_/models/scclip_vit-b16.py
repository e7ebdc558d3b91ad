# SC-CLIP (Bai et al., arXiv 2411.15869) on CLIP ViT-B/16, as released
# (SuleBai/SC-CLIP@0417ba9): LOF-resolved anomalous tokens, similarity-guided aggregation
# (blocks 9 and 4) and multi-level fusion (blocks 4..10). Benchmark configs set name_path
# and the thresholds.
model = dict(
    type='SFPSegmentor',
    clip_path='ViT-B/16',
    name_path=None,
    encoder=dict(type='SCCLIPEncoder', guidance_block=9, post_guidance_block=4,
                 fusion_blocks=(4, 10), res_cls=0.3, beta=0.4, n_neighbors=30,
                 contamination=0.05),
    purify=False,  # True adds SFP's purification (pm) before SC-CLIP's own steps
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
