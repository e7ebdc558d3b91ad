_base_ = './loader.py'
test_dataloader = dict(
    dataset=dict(
        type='PascalVOC20Dataset',
        data_root='data/VOCdevkit/VOC2012',  # override with tools/test.py --data-root
        data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
        ann_file='ImageSets/Segmentation/val.txt',
    ))
