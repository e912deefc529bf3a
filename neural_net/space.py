"""The CNN family's search space: the seed project's CIFAR-100 architecture space."""

from __future__ import annotations

from typing import Any

from hyperopt import hp

# The seed project's space, kept key for key (and label for label) so that
# results of older runs stay comparable.
CIFAR_SPACE: dict[str, Any] = {
    # Multiplies the base learning rate, log-uniformly.
    "lr_rate_mult": hp.loguniform("lr_rate_mult", -0.5, 0.5),
    # Multiplies the base L2 weight decay.
    "l2_weight_reg_mult": hp.loguniform("l2_weight_reg_mult", -1.3, 1.3),
    "batch_size": hp.quniform("batch_size", 100, 450, 5),
    "optimizer": hp.choice("optimizer", ["Adam", "Nadam", "RMSprop"]),
    # Weight of the coarse-label head's loss relative to the fine head.
    "coarse_labels_weight": hp.uniform("coarse_labels_weight", 0.1, 0.7),
    "conv_dropout_drop_proba": hp.uniform("conv_dropout_proba", 0.0, 0.35),
    "fc_dropout_drop_proba": hp.uniform("fc_dropout_proba", 0.0, 0.6),
    "use_BN": hp.choice("use_BN", [False, True]),
    # An optional first convolution with its own kernel size.
    "first_conv": hp.choice("first_conv", [None, hp.choice("first_conv_size", [3, 4])]),
    # None, or how many residual units to stack (1-4).
    "residual": hp.choice("residual", [None, hp.quniform("residual_units", 1 - 0.499, 4 + 0.499, 1)]),
    "conv_hiddn_units_mult": hp.loguniform("conv_hiddn_units_mult", -0.6, 0.6),
    "nb_conv_pool_layers": hp.choice("nb_conv_pool_layers", [2, 3]),
    # From which conv+pool block on residual units are added.
    "conv_pool_res_start_idx": hp.quniform("conv_pool_res_start_idx", 0, 2, 1),
    "pooling_type": hp.choice("pooling_type", ["max", "avg", "all_conv", "inception"]),
    "conv_kernel_size": hp.quniform("conv_kernel_size", 2, 4, 1),
    "res_conv_kernel_size": hp.quniform("res_conv_kernel_size", 2, 4, 1),
    "fc_units_1_mult": hp.loguniform("fc_units_1_mult", -0.6, 0.6),
    # None, or the width multiplier of a second fully connected layer.
    "one_more_fc": hp.choice("one_more_fc", [None, hp.loguniform("fc_units_2_mult", -0.6, 0.6)]),
    "activation": hp.choice("activation", ["relu", "elu"]),
}

# A mid-sized model of the space, drawn to results/model_demo.png.
DEMO_PARAMS: dict[str, Any] = {
    "lr_rate_mult": 1.0,
    "l2_weight_reg_mult": 1.0,
    "batch_size": 300,
    "optimizer": "Nadam",
    "coarse_labels_weight": 0.2,
    "conv_dropout_drop_proba": 0.175,
    "fc_dropout_drop_proba": 0.3,
    "use_BN": True,
    "first_conv": 4,
    "residual": 4,
    "conv_hiddn_units_mult": 1.0,
    "nb_conv_pool_layers": 3,
    "conv_pool_res_start_idx": 0.0,
    "pooling_type": "inception",
    "conv_kernel_size": 3.0,
    "res_conv_kernel_size": 3.0,
    "fc_units_1_mult": 1.0,
    "one_more_fc": 1.0,
    "activation": "elu",
}
