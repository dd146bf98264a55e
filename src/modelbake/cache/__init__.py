"""The cache side: `--cache` specs per image, the GitHub Actions cache environment, the probe, the budget."""
