"""Active learning: which unlabelled images to label next (`transferkit suggest`)."""
