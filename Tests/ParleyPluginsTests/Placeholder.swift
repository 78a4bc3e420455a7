// Placeholder: tests come with the issue that builds this target.
