"""The papers the models come from, cited by the registry and the docs."""

import dataclasses

from cnnzoo.registry import Paper

LECUN1998 = Paper(
    title="Gradient-Based Learning Applied to Document Recognition",
    authors="LeCun, Bottou, Bengio, Haffner",
    year=1998,
    link="https://doi.org/10.1109/5.726791",
)
KRIZHEVSKY2012 = Paper(
    title="ImageNet Classification with Deep Convolutional Neural Networks",
    authors="Krizhevsky, Sutskever, Hinton",
    year=2012,
    link="https://doi.org/10.1145/3065386",
)
KRIZHEVSKY2014 = Paper(
    title="One weird trick for parallelizing convolutional neural networks",
    authors="Krizhevsky",
    year=2014,
    link="https://arxiv.org/abs/1404.5997",
)
SIMONYAN2014 = Paper(
    title="Very Deep Convolutional Networks for Large-Scale Image Recognition",
    authors="Simonyan, Zisserman",
    year=2014,
    link="https://arxiv.org/abs/1409.1556",
)
SZEGEDY2014 = Paper(
    title="Going Deeper with Convolutions",
    authors="Szegedy et al.",
    year=2014,
    link="https://arxiv.org/abs/1409.4842",
)
SZEGEDY2015 = Paper(
    title="Rethinking the Inception Architecture for Computer Vision",
    authors="Szegedy, Vanhoucke, Ioffe, Shlens, Wojna",
    year=2015,
    link="https://arxiv.org/abs/1512.00567",
)
HE2015 = Paper(
    title="Deep Residual Learning for Image Recognition",
    authors="He, Zhang, Ren, Sun",
    year=2015,
    link="https://arxiv.org/abs/1512.03385",
)
HE2016 = Paper(
    title="Identity Mappings in Deep Residual Networks",
    authors="He, Zhang, Ren, Sun",
    year=2016,
    link="https://arxiv.org/abs/1603.05027",
)
ZEILER2013 = Paper(
    title="Visualizing and Understanding Convolutional Networks",
    authors="Zeiler, Fergus",
    year=2013,
    link="https://arxiv.org/abs/1311.2901",
)
IOFFE2015 = Paper(
    title="Batch Normalization: Accelerating Deep Network Training by Reducing Internal "
    "Covariate Shift",
    authors="Ioffe, Szegedy",
    year=2015,
    link="https://arxiv.org/abs/1502.03167",
)
XIE2016 = Paper(
    title="Aggregated Residual Transformations for Deep Neural Networks",
    authors="Xie, Girshick, Dollár, Tu, He",
    year=2016,
    link="https://arxiv.org/abs/1611.05431",
)
ZAGORUYKO2016 = Paper(
    title="Wide Residual Networks",
    authors="Zagoruyko, Komodakis",
    year=2016,
    link="https://arxiv.org/abs/1605.07146",
)
# The teaching nets are course material, not a paper's networks: no paper describes them. They
# cite the paper whose pattern they teach (conv and pooling layers, then fully connected ones,
# LeNet-5's layout), and the note says so, rather than an invented reference.
TEACHING = dataclasses.replace(
    LECUN1998,
    note=(
        "not a network of this paper: a course-style teaching CNN (conv blocks, then a ReLU MLP) "
        "in the conv-pool-fc layout LeNet-5 introduced"
    ),
)
