"""A domain classifier: the category of an item image, for the evaluation suite.

The Inception Score needs the 1008-way ImageNet head of the 2015 Inception network, which no
package ships offline (docs/MODELS.md, "Domain classifier"). gis therefore trains its own small
classifier on the dataset's categories and names every score computed with it as such ("domain
IS", ``gis.metrics.inception_score``). The same classifier gives the category of generated
images for the truth checks and measures whether a shift preserves an item's category: it is
the category reader of the fashion-colors ground truth (``gis_fashion_colors.truth``).

``DomainClassifier`` is a small CNN: the three colour values of each pixel sorted (so which
channel is which -- the hue -- cannot be a cue), three blocks of conv 3x3 - BN - ReLU layers
and a 2x max-pool (``DEFAULT_ARCH``: 32, 64 and 128 channels with 1, 2 and 2 convs),
dropout, a hidden fully connected layer (256) and a linear layer to the categories. Input:
(B, 3, R, R) images in [-1, 1] at the dataset's resolution R; output: logits
(B, num_classes).

Modules: ``model`` (the network and its files), ``augment`` (the augmentation) and ``train``
(training and accuracy: ``ClassifierTrainer`` in gis's training skeleton).
``train_domain_classifier`` trains it on the catalogue images and
their categories and measures it on the held-out items (never seen in training): overall and per-class accuracy go
into the model card. Training is seeded and deterministic on the CPU. Augmentation makes it
robust to GAN output and blind to colour (colour carries no category information, and the
classifier must not use it as a cue): random shifts of up to 2 px, horizontal flips, random
channel permutation, hue rotation about the grey axis, saturation changes and greyscale,
gaussian blur and gaussian noise.

Files: ``domain-classifier.safetensors`` (weights; the JSON meta in its header holds the
architecture, the dataset's categories and resolution and the model card; no pickle) and
``domain-classifier.json`` (the model card). ``gis train classifier --data NAME --out DIR``
writes both; ``load_domain_classifier`` reads them.
"""

from .augment import DEFAULT_AUG, augment
from .model import (
    CARD_NAME,
    FORMAT,
    META_KEY,
    WEIGHTS_NAME,
    DomainClassifier,
    load_domain_classifier,
    provision_command,
    save_domain_classifier,
)
from .train import (
    DEFAULT_ARCH,
    DEFAULT_EPOCHS,
    ClassifierTrainConfig,
    ClassifierTrainer,
    classifier_accuracy,
    dataset_fingerprint,
    train_domain_classifier,
)

__all__ = [
    "CARD_NAME",
    "DEFAULT_ARCH",
    "DEFAULT_AUG",
    "DEFAULT_EPOCHS",
    "FORMAT",
    "META_KEY",
    "WEIGHTS_NAME",
    "ClassifierTrainConfig",
    "ClassifierTrainer",
    "DomainClassifier",
    "augment",
    "classifier_accuracy",
    "dataset_fingerprint",
    "load_domain_classifier",
    "provision_command",
    "save_domain_classifier",
    "train_domain_classifier",
]
