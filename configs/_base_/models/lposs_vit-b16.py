# LPOSS (Stojnic et al., CVPR 2025) on CLIP ViT-B/16 with DINO ViT-B/16, as released
# (vladan-stojnic/LPOSS@e489a74): MaskCLIP's patch predictions (identity attention, the
# last block's residual and MLP kept, plain cosines) propagated over a kNN graph of
# DINO's last-block values over all windows' patches at once (10 conjugate-gradient
# steps); each class takes the max over its synonyms at the input size, then the
# softmax over classes (no temperature). LPOSS+ (configs/lposs/lposs_plus_*.py) adds the
# propagation over pixels. Benchmark configs set name_path.
model = dict(
    type='SFPSegmentor',
    # open_clip's LAION-2B ViT-B/16 (exact GELU); a local file (a bare state dict) runs
    # with clip_activation.
    clip_path='hf-hub:laion/CLIP-ViT-B-16-laion2B-s34B-b88K',
    clip_activation='gelu',
    vfm_path='dino_vitb16',
    name_path=None,
    encoder=dict(type='LPOSSEncoder'),
    propagation=dict(alpha=0.95, gamma=3.0, k=400, sigma=0.01, pix_dist_pow=1.0,
                     pixel_refine=False, tau=0.01, r=13, enc_type_feats='v', cg_tol=1e-6,
                     cg_maxiter=10),
    synonyms_at_input=True,
    # purify=True adds SFP's outlier detection (pm) and mitigation before the last block;
    # the release has none.
    purify=False,
    pm='SOM',
    logit_scale=1,
    prob_thd=0.0,
    area_thd=None,
    slide_crop=224,
    slide_stride=112,
    pamr_steps=0,
    precision=None,  # fp16 on GPU, fp32 on CPU; 'bf16' and 'fp64' also work
    crop_batch_size=None,  # None: as many crops per batch as fit memory_budget_mb
    memory_budget_mb=None,  # None: half the free GPU memory, or 2 GiB on the CPU
    return_probs=False,
)
