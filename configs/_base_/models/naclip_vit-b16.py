# NACLIP (Hajimiri et al., WACV 2025) on CLIP ViT-B/16, as released (sinahmr/NACLIP@0cac3a6,
# "reduced" architecture): k-k attention with a Gaussian neighbourhood bias in the last
# block, no residual, no FFN; PAMR on the logits (the release's main results). Benchmark
# configs set name_path, prob_thd and whole-image or sliding inference.
model = dict(
    type='SFPSegmentor',
    clip_path='ViT-B/16',
    name_path=None,
    encoder=dict(type='NACLIPEncoder', gaussian_std=5.0),
    purify=False,  # True adds SFP's purification (pm) before the last block
    pm='SOM',
    logit_scale=40,
    prob_thd=0.0,
    area_thd=None,
    slide_crop=224,
    slide_stride=112,
    resize_via_input=True,  # whole image: grid -> input size -> original size
    pamr_steps=10,
    pamr_stride=(8, 16),
    precision=None,
    crop_batch_size=None,
    memory_budget_mb=None,
    return_probs=False,
)
