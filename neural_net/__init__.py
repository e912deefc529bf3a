"""Caviar's default model: CIFAR-100 (and CIFAR-10, MNIST, Fashion-MNIST) CNNs built from the search space.

- ``neural_net.settings``: the objective's settings, read from the environment;
- ``neural_net.datasets``: the data sets, read from their official files;
- ``neural_net.model``: the Keras model of one point of ``optimizer.space.CIFAR_SPACE``;
- ``neural_net.train``: ``objective`` (the search's default) and ``evaluate_test``.

Importing this package imports neither TensorFlow nor Keras; ``model`` and ``train`` do.
"""
