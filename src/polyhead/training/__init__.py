"""Fine-tuning the multitask model: the LightningModule, optimiser, Trainer, loggers, pre-run checks,
callbacks and run(cfg) (train.py)."""
