# The SFP paper's common protocol (Jin et al., ICCV 2025, section 4.1), under which it ran
# every row of its Table 1 it evaluated itself: CLIP ViT-B/16 with OpenAI's weights, the
# 80 ImageNet prompt templates, images resized to a short side of 336 (560 for Cityscapes),
# sliding windows of 224 with stride 112, no PAMR or DenseCRF.
#   python tools/test.py configs/naclip/naclip_vit-b16_voc21.py --protocol paper
#   PROTOCOL=paper METHODS="clearclip sclip naclip sfp" bash multi_test.sh
# What the paper leaves unsaid (logit scale, thresholds, class-name files) stays each
# method's own setting on that benchmark: see docs/protocols.md.

# The numbers the summary shows beside ours (sfp.benchmarks.REPORTED_TABLES).
reference = 'paper_table1'
# The test pipeline's Resize: short side, per benchmark where it differs (long side <= 2048).
short_side = 336
short_side_per_benchmark = dict(cityscapes=560)
# Model arguments set for every method.
model = dict(
    clip_path='ViT-B/16',
    clip_activation=None,  # OpenAI's own (QuickGELU), over a method's (LPOSS: LAION's GELU)
    templates=None,  # CLIP's 80 ImageNet templates (sfp/data/openai_imagenet_templates.txt)
    slide_crop=224,
    slide_stride=112,
    pamr_steps=0,
)
