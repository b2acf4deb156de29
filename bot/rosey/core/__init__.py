"""The bus and its vocabulary, shared by the host and by every plugin process."""
