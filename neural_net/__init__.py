"""Caviar's default model: CIFAR-100 (and CIFAR-10, MNIST, Fashion-MNIST) CNNs built from the search space.

- ``neural_net.family``: ``CNN``, the model family the master and workers use (``--objective neural_net:CNN``);
- ``neural_net.settings``: the family's settings, read from the environment;
- ``neural_net.space``: the searched architecture space and the demo point;
- ``neural_net.datasets``: the data sets, read from their official files;
- ``neural_net.model``: the Keras model of one point of ``neural_net.space.CIFAR_SPACE``;
- ``neural_net.train``: ``objective`` (the search's default) and ``evaluate_test``.

Importing this package imports neither TensorFlow nor Keras; ``model`` and ``train`` do.
"""

from neural_net.family import CnnFamily

CNN = CnnFamily()
