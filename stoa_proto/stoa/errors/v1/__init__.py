"""Generated package; see proto/."""
