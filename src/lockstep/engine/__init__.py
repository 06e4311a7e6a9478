"""Desired state and plan (pure), observation, apply and verification (effects)."""
