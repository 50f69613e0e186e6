"""Small shared helpers: atomic files, torch.distributed setup, progress bars, safe loading."""
