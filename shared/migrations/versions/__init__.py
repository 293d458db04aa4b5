"""Migration scripts, applied in order by `attune migrate`."""
