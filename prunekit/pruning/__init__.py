"""Masks, schedules and the pruning methods; nothing here knows the training loop beyond its hooks."""
