"""What the tests share: the real stacks they start (NATS, services, KMock, Mosquitto),
stand-ins for outside parties, model factories, and the waiting helpers."""
