"""Training and evaluation: `seit train` (DeiT recipe, DDP via torchrun, exact resume) and `seit eval`.

``seit.engine.train.train(TrainConfig)``, ``seit.engine.evaluate.run_eval(EvalConfig)``; configs in
``seit.engine.config`` (no torch import), the trained classifier file in ``seit.models.checkpoint``.
"""
