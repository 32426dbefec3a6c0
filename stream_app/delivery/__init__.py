"""Getting a batch's records to Kafka: delivered before the batch is acked (:mod:`.publish`), or committed with
the input offsets in one transaction per source partition (:mod:`.transactions`); the clients' security options
(:mod:`.kafka`)."""
