"""What finished trials become: results/ (``results``), plots, trackers, status and progress."""
