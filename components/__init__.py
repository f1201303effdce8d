"""The swappable parts of esgkit, one folder per component kind."""
