"""Stopping trials early: the per-trial plateau/divergence rule (``plateau``), the cross-trial rules
(``cross_trial``) and the stopper that applies both to one trial, epoch by epoch (``stopper``)."""
