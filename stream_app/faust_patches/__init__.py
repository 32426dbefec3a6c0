"""Every fix of Faust and aiokafka behaviour the worker relies on, in one place (see :mod:`.checks`)."""
