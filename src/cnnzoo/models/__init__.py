"""The model zoo, one module per family. Importing this package registers every model."""

from cnnzoo.models import (  # noqa: F401  (imported for their @register_model side effects)
    alexnet,
    densenet,
    googlenet,
    inception,
    lenet,
    mobilenet,
    nin,
    preact_resnet,
    resnet,
    resnet_cifar,
    squeezenet,
    teaching,
    vgg,
)
from cnnzoo.models.base import ClassifierModel, FeatureInfo

__all__ = ["ClassifierModel", "FeatureInfo"]
