"""Caviar's default model: CIFAR-100 (and CIFAR-10, MNIST, Fashion-MNIST) CNNs built from the search space.

- ``neural_net.family``: ``CNN``, the model family the master and workers use (``--objective neural_net:CNN``);
- ``neural_net.settings``: the family's settings, read from the environment;
- ``neural_net.space``: the searched architecture space and the demo point;
- ``neural_net.datasets``: the data sets, read from their official files;
- ``neural_net.model``: the Keras model of one point of ``neural_net.space.CIFAR_SPACE``, its
  inference model (raw uint8 images in, fine class probabilities out) and its diagram;
- ``neural_net.batches``: the training batches, numpy arrays through a Keras ``PyDataset``;
- ``neural_net.train``: ``objective`` (what ``CNN`` trains, by ``--cv`` folds or not), ``refit`` and
  ``evaluate_test``;
- ``neural_net.inference``: class predictions of a saved model on a file of images (``predict``);
- ``neural_net.classic``: the classic MNIST / Fashion-MNIST examples (MLPs, a small CNN) as model
  families (``neural_net.classic:mlp1``...) with their spaces.

Only Keras 3 APIs are used: any ``KERAS_BACKEND`` with a GPU (tensorflow, jax, torch) trains.
Importing this package imports no Keras; ``model``, ``batches`` and ``train`` do.
"""

from neural_net.family import CnnFamily

CNN = CnnFamily()
