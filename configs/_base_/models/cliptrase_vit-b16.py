# CLIPtrase (Shao et al., ECCV 2024) on CLIP ViT-B/16, as released (leaves162/CLIPtrase@2b7de61):
# q-q + k-k + v-v attention in the last block (residual and MLP kept); DBSCAN on block 11's
# self-correlation finds regions, and each crop's label map takes in every region the label
# most of its pixels have. Here in the framework's windows (224 / 112) with the release's
# 224 px setting of the clusters; the release's own protocol (one centre crop) is
# configs/cliptrase/*_release224.py and *_release336.py. Benchmark configs set name_path.
model = dict(
    type='SFPSegmentor',
    clip_path='ViT-B/16',
    name_path=None,
    # The 336 px row of the release: dbscan_eps=1.1, dbscan_min_samples=7.
    encoder=dict(type='CLIPtraseEncoder', dbscan_eps=0.7, dbscan_min_samples=3,
                 median_size=7, upsample_ratio=4, cls_logit_product=False,
                 background_class=None),
    purify=False,  # True adds SFP's purification (pm) before the last block
    pm='SOM',
    logit_scale=100,  # the release's: CLIP's own scale (only the argmax is used)
    prob_thd=0.0,
    area_thd=None,
    slide_crop=224,
    slide_stride=112,
    pamr_steps=0,
    precision=None,
    crop_batch_size=None,
    memory_budget_mb=None,
    return_probs=False,
)
