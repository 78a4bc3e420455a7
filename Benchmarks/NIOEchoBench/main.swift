// Placeholder: the raw SwiftNIO echo server is built by the benchmark issue.
print("NIOEchoBench: not yet implemented")
