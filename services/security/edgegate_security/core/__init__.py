"""The security service's own logic, free of gRPC and NATS: tokens, scopes, inspection."""
