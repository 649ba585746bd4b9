"""The lanes of ``time_to_accuracy.py``, a module each: ``hpo_lane`` (the default study), ``no_search`` (the
first warm start trained for the whole budget), ``tpe_lane`` (Optuna TPE, no pruning) and ``kerastuner_lanes``
(KerasTuner Hyperband and RandomSearch); ``common`` holds what they share (the budget alarm, the reference
epoch, the test set, the best-so-far curve). Each lane is ``lane_*(cfg, splits, budget, tmp, args) -> dict``.
"""
