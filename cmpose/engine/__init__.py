"""Training machinery: optimizer parameter groups, LR schedules, EMA of the weights."""
