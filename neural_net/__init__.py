"""Caviar's default model: CIFAR-100 (and CIFAR-10, MNIST, Fashion-MNIST) CNNs built from the search space.

- ``neural_net.settings``: the objective's settings, read from the environment;
- ``neural_net.datasets``: the data sets, read from their official files;
- ``neural_net.model``: the Keras model of one point of ``optimizer.space.CIFAR_SPACE``, its
  inference model (raw uint8 images in, fine class probabilities out) and its diagram;
- ``neural_net.batches``: the training batches, numpy arrays through a Keras ``PyDataset``;
- ``neural_net.train``: ``objective`` (the search's default) and ``evaluate_test``.

Only Keras 3 APIs are used: any ``KERAS_BACKEND`` with a GPU (tensorflow, jax, torch) trains.
Importing this package imports no Keras; ``model``, ``batches`` and ``train`` do.
"""
