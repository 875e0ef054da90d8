"""Counterfactual prediction against the baselines the field checks first."""
