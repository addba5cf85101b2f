"""The Qt layer: thread-pool workers and the batch runner. The core never imports from here."""
