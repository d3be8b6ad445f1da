"""Work off the GUI thread: the engine thread and its jobs, store I/O, image decoding."""
