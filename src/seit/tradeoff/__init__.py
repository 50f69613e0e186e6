"""`seit tradeoff`: top-1 against bytes per image for the same ViT on tokens and on pixels stored many ways."""
