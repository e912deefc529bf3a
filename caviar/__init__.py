"""Caviar's shared core, imported by the master (``optimizer``), the workers (``worker``) and model plugins.

Layers, each importing only those listed before it (tests/test_layers.py checks it):

- ``caviar.errors``, ``caviar.imports``, ``caviar.config``, ``caviar.files``: the error users see, import paths,
  flags and logging, files written atomically;
- ``caviar.objective``, ``caviar.family``: the public contract of an objective and of a model family;
- ``caviar.store``: where one experiment's trials live (the interface, ``LocalStore``, ``MongoStore``);
- ``caviar.runner``: running one claimed trial (heartbeat, evaluation, artifacts);
- ``caviar.output``: what finished trials become (results/, plots, tracking, status, progress).

Importing this package imports none of them, so workers and ``--help`` start fast.
"""
