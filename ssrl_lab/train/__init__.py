"""Training: one loop, a small plug-in per method, and what they share.

:mod:`.loop` (``Loop``, the ``Method`` contract) trains every method; :mod:`.harness` is what each
``train(cfg)`` does around it. Methods (each ``python -m ssrl_lab.train.<method> --profile P
--corpus DIR --run-dir DIR``):

* :mod:`.dino` - stage-1 DINO self-distillation (multi-crop, EMA teacher);
* :mod:`.ssrl` - stage-2 SSRL (online relabelling, label queues, noisy-label modelling);
* :mod:`.iterative` - the two-stage iterative pseudo-labelling baseline (k-means + AAM-softmax);
* :mod:`.supervised` - classifier training on the true speaker labels (upper bound);
* :mod:`.random_init` - a randomly initialised encoder evaluated as a system (lower bound).

Shared pieces: :mod:`.run` (RunDir), :mod:`.schedules`, :mod:`.ema`, :mod:`.distributed`,
:mod:`.context` (device / AMP / seeds / loaders / the shared configs) and :mod:`.classifier`
(AAM-softmax steps).
"""
