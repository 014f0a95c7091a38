"""Records of built versions outside the database (git tags in the recipes repository)."""
