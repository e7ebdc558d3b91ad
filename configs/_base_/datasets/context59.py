_base_ = './loader.py'
test_dataloader = dict(
    dataset=dict(
        type='PascalContext59Dataset',
        data_root='data/VOCdevkit/VOC2010',  # override with tools/test.py --data-root
        data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClassContext'),
        ann_file='ImageSets/SegmentationContext/val.txt',
    ))
