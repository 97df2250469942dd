"""gRPC inspection API: the server, its bearer-token auth, and the generated stubs."""
