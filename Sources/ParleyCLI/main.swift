// Placeholder: the `parley` command line is built by the `parley serve` issue.
print("parley: not yet implemented")
