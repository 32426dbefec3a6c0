"""The worker's Faust wiring: its topics (:mod:`.topics`), the agent that takes each batch through the pipeline
(:mod:`.agent`), its background tasks and timers (:mod:`.tasks`) and its web pages (:mod:`.web`)."""
