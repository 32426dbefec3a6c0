"""A model's life after training: candidates admitted from a folder, shadowed and promoted or refused
(:mod:`.candidates`, :mod:`.shadow`), retraining on labels, drift or falling precision (:mod:`.retrain`), and the
fleet's registry with its champion, shadow and canary (:mod:`.registry`, :mod:`.fleet`, whose counts and
verdicts are in :mod:`.fleet_counts`)."""
