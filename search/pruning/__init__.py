"""Stopping trials early: the per-trial plateau/divergence rule and the cross-trial rules."""
