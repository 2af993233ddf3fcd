"""Small shared utilities (atomic file writes: :mod:`.io`)."""
