"""Training: one loop, a small plug-in per method, and what they share.

:mod:`.loop` (``Loop``, the ``Method`` contract) trains every method; :mod:`.harness` is what each
``train(cfg)`` does around it. Methods (each ``python -m ssrl_lab.train.<method> --profile P
--corpus DIR --run-dir DIR``):

* :mod:`.dino` - stage-1 DINO self-distillation (multi-crop, EMA teacher);
* :mod:`.ssrl` - stage-2 SSRL (online relabelling, label queues, noisy-label modelling);
* :mod:`.iterative` - the two-stage iterative pseudo-labelling baseline (k-means + AAM-softmax);
* :mod:`.supervised` - classifier training on the true speaker labels (upper bound);
* :mod:`.random_init` - a randomly initialised encoder evaluated as a system (lower bound).

Shared pieces, one concept each: :mod:`.train_config` (the shared configs), :mod:`.devices`
(device, AMP, seeds, RNG state), :mod:`.loader` (sharded batches, epoch sizes), :mod:`.wrap`
(compile, SyncBatchNorm, DDP), :mod:`.optim` (parameter groups, optimisers, clipping),
:mod:`.schedules`, :mod:`.ema`, :mod:`.results` (evaluation, results.json fields), :mod:`.run`
(RunDir), :mod:`.distributed` and :mod:`.classifier` (AAM-softmax steps). The waveform and
SpecAugment builders live beside what they build (:func:`ssrl_lab.data.augment.build_augmenter`,
:func:`ssrl_lab.data.batch_augment.build_batch_augment`, :func:`ssrl_lab.features.build_spec_augment`).
"""
