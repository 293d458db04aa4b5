"""Events: the envelope, the transactional outbox, the relay to Kafka and the consumer helper."""
