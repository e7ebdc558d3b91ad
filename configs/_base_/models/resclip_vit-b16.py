# ResCLIP (Yang et al., CVPR 2025) on CLIP ViT-B/16, as released
# (yvhangyang/ResCLIP@0e085f7, "wo_resi" + "resclip" = ResCLIP on NACLIP): NACLIP's last
# block with residual cross-correlation self-attention (blocks 6-9) and semantic
# feedback refinement (a first pass labels the patches, PAMR inside it); no final PAMR.
# Benchmark configs set name_path, prob_thd, whole-image or sliding inference and the
# encoder's temp_thd / attn_rcs_weights / attn_sfr_weights (these are VOC21's).
model = dict(
    type='SFPSegmentor',
    clip_path='ViT-B/16',
    name_path=None,
    encoder=dict(
        type='ResCLIPEncoder',
        gaussian_std=5.0,
        temp_thd=0.5,
        attn_rcs_weights=(2.0, 0.3),  # (tau, lambda)
        attn_sfr_weights=(2.2, 0.7),
        delete_same_entity=True,
        use_rcs=True,  # False / False: ablations (the release cannot switch them off)
        use_sfr=True,
        rcs_blocks=(6, 7, 8, 9),
        first_pass_logit_scale=40,
        first_pass_pamr_steps=10,
        first_pass_pamr_dilations=(8, 16),
    ),
    purify=False,  # True adds SFP's purification (pm) before the last block
    pm='SOM',
    logit_scale=40,
    prob_thd=0.0,
    area_thd=None,
    slide_crop=224,
    slide_stride=112,
    resize_via_input=True,  # whole image: grid -> input size -> original size
    pamr_steps=0,  # a final PAMR on the logits; the first pass's PAMR is the encoder's
    pamr_stride=(8, 16),
    precision=None,
    crop_batch_size=None,
    memory_budget_mb=None,
    return_probs=False,
)
