"""Developer tools beside the worker: replay a data set into the input topic, plot a run's metrics, and make
planted near-duplicates and hard negatives. The worker never imports them."""
