# Trident (Shi, Dong, Xu, ICCV 2025) on CLIP ViT-B/16 with DINO ViT-B/16 and SAM ViT-B, as
# released (YuHengsss/Trident@a93b346): CLIP's last block takes ProxyCLIP's proxy attention
# over DINO's similarities on 336-pixel windows (the mean over all of an image's windows);
# the windows' outputs are spliced and aggregated with SAM's last-block attention on the
# whole image; with sam_refinement the labels are refined with SAM prompts (box, point and
# mask per connected region). The release's settings (its base_config.py, with the
# --sam_refine flag its evaluation scripts pass); benchmark configs set name_path,
# prob_thd, coarse_thresh and the benchmark's own options.
model = dict(
    type='SFPSegmentor',
    clip_path='ViT-B/16',  # a model name (downloaded once, sha256-checked) or a local file
    vfm_path='dino_vitb16',  # DINO: a name (downloaded once) or a local file
    sam_path='sam_vit_b',  # SAM: sam_vit_b / sam_vit_l / sam_vit_h (downloaded once) or a file
    name_path=None,
    encoder=dict(
        type='TridentEncoder',
        beta=1.2,
        gamma=3.0,
        cos_fac=1.2,  # SAM similarity threshold: cos_fac x each token's mean similarity
        refine_neg_cos=True,  # False: a negative threshold becomes 0.6
        sam_refinement=True,  # the release's evaluation (eval.py --sam_refine)
        coarse_thresh=0.2,
        minimal_area=225,  # pixels of a prompted region, at half resolution
        sam_mask_coff=0.005,
        sam_iou_thresh=0.8,
        dataset_type='PascalVOCDataset',  # 'CityscapesDataset': SAM on two halves
    ),
    # purify=True adds SFP's outlier detection (pm) and mitigation before CLIP's last
    # block; the release has none.
    purify=False,
    pm='SOM',
    logit_scale=40,
    prob_thd=0.0,
    area_thd=None,
    slide_crop=336,  # Trident windows the image itself and splices the windows' features
    slide_stride=224,
    pamr_steps=0,
    precision=None,  # fp16 on GPU, fp32 on CPU; 'bf16' and 'fp64' also work
    return_probs=False,
)
