"""Monitoring: the prediction-log sink, Evidently drift, the retrain trigger, and KFP UI visuals."""
