# CorrCLIP (Zhang et al., ICCV 2025) on MetaCLIP ViT-B/16 with DINO ViT-B/8, as released
# (zdk258/CorrCLIP@103bc18, CorrCLIPv1/): CLIP's last block attends with DINO's q + k
# correlations, limited to the class-agnostic regions of a mask source (regions with
# similar DINO features merged by DBSCAN); a spatial branch (mean of middle blocks) and a
# semantic branch (one class token per region) are added; the final map is corrected by a
# majority vote inside each region. Features on DINO's 8-pixel grid; each window padded to
# a multiple of 56 pixels. Benchmark configs set name_path, prob_thd, the mask folder and,
# for Cityscapes, the crop.
model = dict(
    type='SFPSegmentor',
    # open_clip's create_model('ViT-B-16-quickgelu', pretrained='metaclip_fullcc'), from
    # open_clip's Hugging Face copy (its open_clip_config.json sets QuickGELU); a local
    # file (b16_fullcc2.5b.pt, loaded as QuickGELU) or folder works too.
    clip_path='hf-hub:timm/vit_base_patch16_clip_224.metaclip_2pt5b',
    vfm_path='dino_vitb8',  # torch.hub's dino_vitb8: DINO's published ViT-B/8
    name_path=None,
    encoder=dict(
        type='CorrCLIPEncoder',
        alpha=1.0,  # spatial branch weight (the release's ALPHA)
        beta=0.5,  # semantic branch weight (BETA)
        tau=4.0,  # attention temperature (TAU)
        num_spatial=None,  # blocks the spatial branch averages (None: 5 for 12 blocks)
        dbscan_eps=0.2,  # mask merging
        dbscan_min_samples=1,
        pad_mask_value=10000,  # the id of a padded crop's padding
    ),
    # Each image's class-agnostic regions: a folder of the release's <stem>.npz files (key
    # instance_mask), or a generator (masks='SAM2AutomaticMasks': pip install -e '.[sam2]'
    # and SAM2's sam2_hiera_large.pt). instance_mask_path (the release's name for the
    # folder) overrides it.
    masks=None,
    map_correction=True,  # the majority vote inside each region, after the labels
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
