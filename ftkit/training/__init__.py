"""Layer 3: the training loop (fit/evaluate), its history, optimizers and schedules, callbacks, checkpoints."""
