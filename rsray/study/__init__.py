"""Studies: arms x factors x seeds, their statistics and report."""
