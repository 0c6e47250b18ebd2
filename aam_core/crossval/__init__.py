"""Cross-validation: AAM beside the baselines a lab could fit in a minute, on identical
grouped folds, with paired intervals and the depth-confound verdict.

- :mod:`~aam_core.crossval.study`: the samples every model sees;
- :mod:`~aam_core.crossval.folds`: repeated grouped K-fold outside, one grouped split inside;
- :mod:`~aam_core.crossval.models`: the models, each fitted on one fold;
- :mod:`~aam_core.crossval.scoring`: metrics, intervals, summaries, the depth check;
- :mod:`~aam_core.crossval.engine`: the run, kept fold by fold so that it resumes;
- :mod:`~aam_core.crossval.estimate`: its duration, measured before it starts;
- :mod:`~aam_core.crossval.report` and :mod:`~aam_core.crossval.plots`: what a lab reads.
"""
