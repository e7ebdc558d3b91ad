_base_ = './cliptrase_vit-b16_voc20.py'
# The release's own protocol (clip_self_correlation.py) at 224 px, its paper's table: the short
# side resized to 224 (Pillow bicubic), the central 224 x 224 square encoded whole, labels
# resized (nearest) and cropped alike, so the metric covers the square.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='ResizeCenterCrop', size=224),
    dict(type='PackSegInputs'),
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
model = dict(
    slide_crop=0,
    # CLIP's 0-1 normalisation constants (x 255), as the release normalises.
    data_preprocessor=dict(type='SFPDataPreProcessor',
                           mean=[122.7709383, 116.7460125, 104.09373615],
                           std=[68.5005327, 66.6321579, 70.32316305]),
)
