# -*- coding: utf-8 -*-
"""
@article{Li2022PickerOptimizer,
title = {PickerOptimizer: A Deep Learning-Based Particle Optimizer for Cryo-Electron Microscopy Particle-Picking Algorithms},
author = {Li, Hongjia and Zhang, Hui and Wan, Xiaohua and Yang, Zhidong and Li, Chengmin and Li, Jintao and Han, Renmin and Zhu, Ping and Zhang, Fa},
journal = {Journal of Computational Biology},
volume = {29},
number = {10},
pages = {1117--1131},
year = {2022},
}

@article{Yan2022CLClustering,
title = {CL-Clustering: contrastive-learning clustering of cryo-EM single-particle images},
author = {Yan, Yang and others},
journal = {Journal of Xiamen University (Natural Science)},
volume = {61},
number = {6},
year = {2022}
}

@article{Tang2024SimcryoCluster,
title = {SimcryoCluster: a semantic similarity clustering method of cryo-EM images by adopting contrastive learning},
author = {Tang, Huanrong and others},
journal = {BMC Bioinformatics},
volume = {25},
pages = {77},
year = {2024}
}

@article{Jocher2023Ultralytics,
title = {Ultralytics YOLO},
author = {Jocher, Glenn and Qiu, Jing and Chaurasia, Ayush},
journal = {Software},
url = {https://github.com/ultralytics/ultralytics},
year = {2023}
}
"""
