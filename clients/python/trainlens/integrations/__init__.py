"""Framework integrations, each a few lines for the user.

* :mod:`trainlens.integrations.huggingface` — ``TrainlensCallback`` for the
  Hugging Face ``Trainer``;
* :mod:`trainlens.integrations.lightning` — ``TrainlensLogger`` for
  (PyTorch) Lightning's ``Trainer``;
* :mod:`trainlens.integrations.keras` — ``TrainlensCallback`` for Keras 3's
  ``model.fit``.

Each module imports its framework when it is imported; ``import trainlens``
imports none of them.
"""
