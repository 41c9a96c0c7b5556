"""Plumbing shared by the caption, trainer and preview services: storage, errors, server, models."""
