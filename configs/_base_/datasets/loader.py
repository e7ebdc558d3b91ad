# What every benchmark shares: the test pipeline (resize to a short side of 336, long side
# at most 2048, as released) and a batched, multi-worker, pinned-memory loader. Dataset
# configs fill in test_dataloader.dataset; ADE20K and Cityscapes change the short side.
# mmcv's LoadImageFromFile comes first, as mmseg's inference_model and MMSegInferencer
# need; tools/test.py reads with LoadImageChecked instead (sfp.evaluation).
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 336), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
test_dataloader = dict(
    # The crops of all images in a batch are encoded together: 16 VOC-size images are 96
    # crops per forward, enough to keep a GPU busy (the memory budget still caps it).
    batch_size=16,
    num_workers=4,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(pipeline=test_pipeline))
