// Placeholder: the conformance server is built by the Socket.IO issue.
print("parley-protocol-server: not yet implemented")
