"""Multi-run training recipes that follow a seed paper's procedure step by step."""
