# SFP on CLIP ViT-B/16. Benchmark configs set name_path and the thresholds.
model = dict(
    type='SFPSegmentor',
    clip_path='ViT-B/16',  # a model name (downloaded once, sha256-checked) or a local file
    name_path=None,
    # SFP's own knobs (the release's names; also accepted beside pm, as the release has
    # them): res_cls weighs the CLS residual (and SOM's CLS weight, 5 * res_cls); the
    # hierarchical integrator sums blocks cross_s + 1 .. cross_e.
    encoder=dict(type='SFPEncoder', res_cls=0.3, cross_s=3, cross_e=10),
    # Ablation switches, as in the release: purify=False removes outlier detection and
    # mitigation; pm picks the detector ('SOM' default, 'L2', 'LOF', 'cls_attn', 'DBSCAN'
    # ... or a dict such as dict(type='LOF', n_neighbors=20)).
    purify=True,
    pm='SOM',
    slide_crop=224,
    slide_stride=112,
    precision=None,  # fp16 on GPU, fp32 on CPU; 'bf16' and 'fp64' also work
    crop_batch_size=None,  # None: as many crops per batch as fit memory_budget_mb
    memory_budget_mb=None,  # None: half the free GPU memory, or 2 GiB on the CPU
    pamr_steps=0,
    # The metric reads only the label maps; True also stores per-class probabilities
    # (seg_logits, C x H x W per image).
    return_probs=False,
)
